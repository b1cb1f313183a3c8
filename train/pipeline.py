"""Run a recipe's stages in order: each stage starts from the previous one's final weights (or from those of the
earlier stage its ``start_from`` names), stages already complete for the same settings are skipped, an interrupted
stage resumes from its last checkpoint.

Used by ``python -m train`` (and by tests, which pass extra callbacks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Sequence

from recipes import io
from recipes.paths import check_name, data_dir, runs_dir
from recipes.schema import Recipe
from train.callbacks import truncate_logs
from train.checkpoints import (StageResult, checkpoint_step, checkpoints, dataset_fingerprint, export_merged,
                               fingerprint, is_adapter, last_checkpoint, read_result, write_result)
from train.runtime import (StageContext, TrainingSetupError, barrier, check_hardware, compute_dtype, dataset_dir,
                           is_main_process)

# Stage settings that only say how long to train or how often to log/save: changing them continues a run
# (e.g. --set stages.dpo.max_steps=2000 after a 1000-step run) instead of refusing to mix settings.
_LENGTH_KNOBS = ("epochs", "max_steps", "save_steps", "save_total_limit", "logging_steps", "num_workers")
# Stage settings that say how a DPO step is computed, not what it computes (the same log-probs and gradients up to
# float rounding): switching them neither refuses nor retrains a stage, and runs from before they existed keep
# their fingerprints.
_EXECUTION_KNOBS = ("shared_prefix", "precompute_ref_log_probs")


def _base_ref(backbone: str) -> str:
    """What adapters of the first stage record as their base: a hub id as written, a folder (or a tiny backbone's
    built folder) as an absolute path."""
    from train.backbones import is_tiny, resolve_backbone

    if is_tiny(backbone):
        return str(Path(resolve_backbone(backbone)).resolve())
    if Path(backbone).is_dir():
        return str(Path(backbone).resolve())
    return backbone


def _finish_wandb_run() -> None:
    import sys

    wandb = sys.modules.get("wandb")  # only when a stage actually logged to W&B
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def _fingerprints(ctx: StageContext, base_fp: str) -> tuple[str, str]:
    """(compat, full) fingerprints of a stage: compat leaves out the length knobs."""
    recipe, stage = ctx.recipe, ctx.stage
    settings = {k: v for k, v in stage.model_dump(mode="json").items() if k not in _EXECUTION_KNOBS}
    compat = {k: v for k, v in settings.items() if k not in _LENGTH_KNOBS}
    common = {"stage": ctx.name, "base": base_fp, "lora": recipe.lora.model_dump(mode="json"),
              "quantization": recipe.quantization.model_dump(mode="json"), "precision": recipe.precision,
              "media": recipe.media.model_dump(mode="json"), "data": recipe.data.model_dump(mode="json"),
              "seed": recipe.seed, "dataset": dataset_fingerprint(dataset_dir(ctx))}
    full = {**common, "settings": settings, "export_merged": recipe.export_merged and ctx.is_last}
    return fingerprint({**common, "settings": compat}), fingerprint(full)


def run_recipe(recipe: Recipe, runs_root: str | Path | None = None, data_root: str | Path | None = None,
               callbacks: Sequence = (), log: Callable[[str], None] | None = None) -> list[StageResult]:
    """Run every enabled stage of ``recipe`` into ``runs_root/<recipe>/<stage>/``; returns the stage results.

    Args:
        recipe: the loaded recipe.
        runs_root: parent of the run folder (default ``<project root>/runs``, :mod:`recipes.paths`).
        data_root: folder holding the built ``sft``/``dpo`` datasets (default ``<project root>/data/<recipe>``);
            recorded in each stage's ``started.json`` so evaluation reads the same data.
        callbacks: extra ``TrainerCallback`` objects for every stage.
        log: where progress lines go (default: this module's logger).
    Raises:
        TrainingSetupError: no stage, missing data, missing packages, a launch that is not the recipe's (world
            size, engine), or a stage folder started with other settings.
    """
    import gc

    from train import dpo, sft  # the training stack, loaded before it is set aside below

    # The training stack is loaded now: its long-lived objects (modules, classes, functions; hundreds of thousands)
    # are set aside from the collector while the stages run, so the full collection accelerate runs as every stage
    # starts skips them (0.3 s each on a small run). Released at the end: a caller's later garbage is its own.
    gc.freeze()
    try:
        return _run_stages(recipe, runs_root, data_root, callbacks, log,
                           {"sft": sft.train_stage, "dpo": dpo.train_stage})
    finally:
        gc.unfreeze()


def _run_stages(recipe: Recipe, runs_root, data_root, callbacks: Sequence, log,
                trainers: dict[str, Callable]) -> list[StageResult]:
    main_process = is_main_process()
    log = log or logging.getLogger(__name__).info
    if not main_process:
        log = lambda _: None  # noqa: E731 - one copy of each progress line, not one per rank
    active = recipe.active_stages()
    if not active:
        raise TrainingSetupError("stages: the recipe has no enabled stage")
    for name, stage in active:  # missing packages fail before any model is built or loaded
        check_hardware(recipe, name, stage)
    from train.launch import prepare_launch

    prepare_launch(recipe)  # wrong world size or engine: refused before any work; DeepSpeed on CPU set up
    run_dir = (Path(runs_root) if runs_root is not None else runs_dir()) / check_name(recipe.name, "recipe name")
    data_root = Path(data_root).absolute() if data_root is not None else data_dir(recipe.name)
    log(f"[train] {recipe.name}: data {data_root}, run {run_dir}")
    results: list[StageResult] = []
    done_by_name: dict[str, StageResult] = {}
    for i, (name, stage) in enumerate(active):
        source = recipe.base_stage(name)  # start_from, else the previous stage; None for the first
        prev = None if source is None else done_by_name[source]
        base = recipe.backbone if prev is None else prev.weights
        base_ref = _base_ref(recipe.backbone) if prev is None else prev.weights
        ctx = StageContext(recipe=recipe, name=name, stage=stage, out_dir=run_dir / name, base=base,
                           base_ref=base_ref, data_root=data_root, is_last=i == len(active) - 1)
        compat, full = _fingerprints(ctx, recipe.backbone if prev is None else prev.fingerprint)
        done = read_result(ctx.out_dir)
        if done is not None and done.fingerprint == full and Path(done.weights).exists():
            log(f"[train] {recipe.name}/{name}: complete at step {done.final_step}, skipped")
            results.append(done)
            done_by_name[name] = done
            continue
        started = ctx.out_dir / "started.json"
        if started.is_file() and checkpoints(ctx.out_dir):
            was = json.loads(started.read_text(encoding="utf-8"))
            if was.get("compat") != compat:
                raise TrainingSetupError(
                    f"{ctx.out_dir} holds checkpoints made with other settings or from another base; delete that "
                    "folder (and the stages after it) or run under another recipe name")
        resume = last_checkpoint(ctx.out_dir)
        if main_process:
            ctx.out_dir.mkdir(parents=True, exist_ok=True)
            # Atomic: the other ranks may be reading it (the check above) while the main process rewrites it.
            io.write_json(started, {"compat": compat, "base": base, "data": str(data_root)})
            if resume is not None:
                truncate_logs(ctx.out_dir, checkpoint_step(resume))
        barrier()
        log(f"[train] {recipe.name}/{name}: {stage.kind} from {base}"
            + (f", resuming from {resume.name}" if resume else ""))
        trainers[stage.kind](ctx, resume, callbacks)
        _finish_wandb_run()  # one W&B run per stage: the next stage's step counter starts again at 1
        barrier()

        final = last_checkpoint(ctx.out_dir)
        if final is None:
            raise TrainingSetupError(f"{ctx.out_dir}: training ended without a checkpoint")
        weights = final
        if is_adapter(final) and (not ctx.is_last or recipe.export_merged):
            weights = ctx.out_dir / "merged"
            if main_process:
                log(f"[train] {recipe.name}/{name}: merging {final.name} into {weights}")
                export_merged(base, final, weights, recipe, dtype=compute_dtype(recipe))
            barrier()
        result = StageResult(stage=name, kind=stage.kind, fingerprint=full, final_step=checkpoint_step(final),
                             checkpoint=str(final.resolve()), weights=str(Path(weights).resolve()), base=base)
        if main_process:
            write_result(ctx.out_dir, result)
        barrier()
        log(f"[train] {recipe.name}/{name}: done at step {result.final_step} -> {result.weights}")
        results.append(result)
        done_by_name[name] = result
    return results
