"""Trainer callbacks: JSON-lines and CSV logs, and a copy of the resolved recipe in every checkpoint. (The checkpoint
at the last step, the stage's result, comes from Trainer itself: with ``save_strategy="steps"`` its
``DefaultFlowCallback`` saves when training stops.)

Logs: ``<stage>/log.jsonl`` gets every log record as Trainer emits it (``step``, ``epoch``, ``loss``,
``learning_rate``, ``grad_norm``, TRL's ``rewards/*``, ``logps/*`` ...); ``<stage>/log.csv`` the fixed columns
below, one row per training log (the end-of-training summary goes to JSONL only).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from recipes.cli import UserError
from recipes.io import atomic_path, write_text

CSV_COLUMNS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "rewards/chosen", "rewards/rejected",
               "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected", "entropy",
               "mean_token_accuracy", "num_tokens")


def read_log(stage_dir: str | Path) -> list[dict]:
    """The JSONL log records of a stage (empty when none)."""
    path = Path(stage_dir) / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_logs(stage_dir: str | Path, last_step: int) -> None:
    """Drop log records after ``last_step`` and rewrite the CSV: a run resumed from checkpoint-``last_step``
    re-logs those steps, and the logs must read as if it had never stopped."""
    stage_dir = Path(stage_dir)
    # The end-of-training summary (train_runtime, ...) of an earlier, shorter run goes too: the resumed run writes
    # its own.
    records = [r for r in read_log(stage_dir) if r.get("step", 0) <= last_step and "train_runtime" not in r]
    write_text(stage_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with atomic_path(stage_dir / "log.csv") as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            if "loss" in r:
                writer.writerow(r)


class JsonCsvLogger(TrainerCallback):
    """Append each log record to ``log.jsonl`` and (training logs) to ``log.csv`` on the main process."""

    def __init__(self, stage_dir: str | Path):
        self.dir = Path(stage_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with (self.dir / "log.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if "loss" in logs:
            path = self.dir / "log.csv"
            new = not path.is_file() or path.stat().st_size == 0
            with path.open("a", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerow(record)


class NonFiniteTrainingError(UserError):
    """Training produced a NaN or infinite loss, gradient norm or weight; the stage stopped before saving it."""


class StopOnNonFinite(TrainerCallback):
    """Stop a stage at the first non-finite loss or gradient norm, and before any save whose trainable weights are
    not finite, naming the stage and step. Raising (not ``should_training_stop``) matters: a stopped Trainer would
    still save a final checkpoint, and the pipeline would merge and evaluate a NaN model."""

    def __init__(self, stage: str):
        self.stage = stage

    def _stop(self, what: str, value, step: int) -> None:
        raise NonFiniteTrainingError(
            f"stages.{self.stage}: {what} is {value} at step {step}; the stage stopped without saving or merging it. "
            f"Lower stages.{self.stage}.learning_rate or max_grad_norm, or check the data")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                self._stop(key, value, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Between steps a loss is only seen every `logging_steps`: check the weights a save is about to write.
        if not control.should_save or model is None:
            return
        import torch

        for name, p in model.named_parameters():
            if p.requires_grad and p.numel() and not bool(torch.isfinite(p.detach()).all()):
                self._stop(f"weight {name}", "not finite", state.global_step)


class RecipeIntoCheckpoints(TrainerCallback):
    """Write ``recipe.yaml`` (the resolved recipe) into each checkpoint folder, so evaluation knows what made it."""

    def __init__(self, recipe):
        self.recipe = recipe

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from recipes.schema import dump_recipe

        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            dump_recipe(self.recipe, ckpt / "recipe.yaml")


class StageProgress(ProgressCallback):
    """Trainer's progress bar named after the stage (steps, rate, ETA), with the latest loss and reward margin in
    its postfix instead of a printed dict per log: the full records are in log.jsonl."""

    SHOWN = ("loss", "rewards/margins")

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k.split("/")[-1]: f"{logs[k]:.4g}" for k in self.SHOWN if isinstance(logs.get(k), (int, float))}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


def with_stage_progress(trainer, name: str):
    """Swap ``trainer``'s default progress bar for :class:`StageProgress`; returns the trainer."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StageProgress(name))
    return trainer
