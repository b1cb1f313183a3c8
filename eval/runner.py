"""Evaluate one checkpoint on several suites (``eval run``) and every checkpoint of a run as it appears
(``eval watch``). Data-parallel through accelerate: under ``accelerate launch`` each process computes a shard of
every suite's items into its own cache file, then process 0 merges (re-runs the suite over all shards' caches,
every item a hit) and writes results.json and report.md. A single CPU process is the one-shard case.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from eval.context import EvalContext, PredictionCache
from eval.suites import SUITES, get_suite
from recipes import io
from recipes.media import MediaSettings

CACHE_DIR = "cache"


def parse_sets(assignments: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``suite.key[.sub]=value`` assignments (values parsed as YAML) -> {suite: options}.

    Raises:
        ValueError: an assignment without ``suite.key=``.
    """
    from recipes.schema import parse_value

    out: dict[str, dict[str, Any]] = {}
    for a in assignments:
        if "=" not in a or "." not in a.split("=", 1)[0]:
            raise ValueError(f"--set {a!r}: expected SUITE.KEY=VALUE, e.g. thud.annotations=data/demo/test_clips.jsonl")
        key, value = a.split("=", 1)
        suite, *path = key.strip().split(".")
        node = out.setdefault(suite, {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = parse_value(value, "--set", key.strip())
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def recorded_data(path: str | Path) -> Path | None:
    """The data folder a run was trained on (``data`` in its stages' ``started.json``), given a checkpoint, a stage
    or a run folder; None when nothing was recorded."""
    path = Path(path)
    for f in (path.parent / "started.json", path / "started.json", *sorted(path.glob("*/started.json"))):
        try:
            data = json.loads(f.read_text(encoding="utf-8")).get("data")
        except (OSError, ValueError, AttributeError):
            continue
        if data:
            return Path(data)
    return None


def resolve_data(recipe=None, data: str | Path | None = None, origin: str | Path | None = None) -> Path | None:
    """The built data folder eval reads (held-out clips, benchmark items), by the rule build and train share: an
    explicit ``--data``, else the folder the run in ``origin`` was trained on, else ``<project root>/data/<recipe>``
    (:mod:`recipes.paths`). None without a recipe."""
    from recipes.paths import data_dir

    if data is not None:
        return Path(data).absolute()
    recorded = recorded_data(origin) if origin is not None and Path(origin).is_dir() else None
    if recorded is not None:
        return recorded
    return data_dir(recipe.name) if recipe is not None else None


def check_suite_names(names: Iterable[str]) -> None:
    """Refuse suite names that are not registered (a typo must not pass as an empty evaluation).

    Raises:
        ValueError: naming the unknown suites and the known ones.
    """
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; known: {', '.join(sorted(SUITES))}")


def suite_plan(recipe=None, suites: Iterable[str] | None = None, sets: Iterable[str] = (),
               data_root: str | Path | None = None, data_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Which suites to run with which options: the recipe's ``eval`` section, narrowed by ``suites`` when given,
    with ``--set`` overrides on top. Defaults for what the data builder writes: thud's ``annotations`` is the built
    folder's ``test_clips.jsonl`` when that file exists; spectrogram_mcq's ``items`` is the recipe's built
    benchmark (``data.spectrogram_mcq``), so a recipe never states that path twice. The built folder is
    ``data_dir``, else ``data_root/<recipe>``, else :func:`resolve_data`'s default."""
    plan: dict[str, dict[str, Any]] = {}
    if recipe is not None and data_dir is None:
        data_dir = Path(data_root) / recipe.name if data_root is not None else resolve_data(recipe)
    if recipe is not None:
        for name, s in recipe.eval.suites.items():
            if s.enabled:
                plan[name] = dict(s.options)
    if suites:
        plan = {name: plan.get(name, {}) for name in suites}
    for name, opts in parse_sets(sets).items():
        if "api_key_env" in (opts.get("judge") or {}):
            # A command line could otherwise point a recipe's judge at any variable of the environment.
            raise ValueError(f"--set {name}.judge.api_key_env: a judge's credential variable is named only in the "
                             "recipe's own judge block, never on the command line")
        if name in plan:
            plan[name] = _merge(plan[name], opts)
    if "thud" in plan and recipe is not None and "annotations" not in plan["thud"]:
        default = Path(data_dir) / "test_clips.jsonl"
        if default.is_file():
            plan["thud"]["annotations"] = str(default.resolve())
    if "thud" in plan and recipe is not None and "margin" not in plan["thud"]:
        plan["thud"]["margin"] = recipe.data.shift.margin  # eval items keep the margin training pairs keep
    bench = recipe.data.spectrogram_mcq if recipe is not None else None
    if "spectrogram_mcq" in plan and bench is not None and "items" not in plan["spectrogram_mcq"]:
        plan["spectrogram_mcq"]["items"] = str(bench.items_path(Path(data_dir)).resolve())
    return plan


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    device: Any = None
    state: Any = None

    def barrier(self) -> None:
        if self.state is not None and self.world > 1:
            self.state.wait_for_everyone()

    def total(self, *counts: int) -> tuple[int, ...]:
        """Each count summed over all processes (every process must call it)."""
        if self.world == 1:
            return counts
        import torch
        import torch.distributed

        t = torch.tensor(counts, dtype=torch.long, device=self.device)
        torch.distributed.all_reduce(t)
        return tuple(int(x) for x in t.tolist())


def _distributed() -> _Dist:
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return _Dist()
    import torch

    # accelerate treats a multi-process CPU launch (torchrun / accelerate launch --cpu) as distributed only when
    # asked for cpu=True; without CUDA that is the only way several processes can share the work.
    state = PartialState(cpu=not torch.cuda.is_available())
    return _Dist(state.process_index, state.num_processes, state.device, state)


def eval_dtype(recipe=None) -> str:
    """``bf16`` on a CUDA GPU unless the recipe asks for fp32 (as the trainer does), ``fp32`` on CPU."""
    import torch

    if torch.cuda.is_available() and (recipe is None or recipe.precision != "fp32"):
        return "bf16"
    return "fp32"


def _file_inputs(path: Path) -> str:
    """Identity of an input file and of the media files its JSONL rows name (relative to it, or absolute)."""
    import hashlib

    from eval.context import media_identity

    raw = path.read_bytes()
    h = hashlib.sha256(raw)
    if path.suffix == ".jsonl":
        for line in raw.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            for value in (row.values() if isinstance(row, dict) else ()):
                if isinstance(value, str) and 0 < len(value) < 4096 and "\x00" not in value:
                    media = path.parent / value
                    if media.suffix and media.is_file():
                        h.update(f"{value}={media_identity(media)}".encode())
    return h.hexdigest()[:16]


def plan_inputs(plan: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Identity of every input file a plan's options name (annotations, items, sync sets) and of the media files
    they list: part of a result's settings, so ``eval watch`` evaluates again when an input changes."""
    return {f"{suite}.{k}": _file_inputs(Path(v)) for suite, opts in plan.items() for k, v in sorted(opts.items())
            if isinstance(v, str) and 0 < len(v) < 4096 and "\x00" not in v and Path(v).is_file()}


def _settings(fingerprint: str, media, plan: dict, seed: int, dtype: str) -> dict:
    return {"fingerprint": fingerprint, "dtype": dtype, "media": media.model_dump(mode="json"), "seed": seed,
            "suites": plan, "inputs": plan_inputs(plan)}


def evaluate_checkpoint(checkpoint: str | Path, plan: dict[str, dict[str, Any]], out_dir: str | Path, *,
                        recipe=None, seed: int | None = None, loaded=None) -> dict:
    """Run the suites of ``plan`` on one checkpoint; write ``out_dir/results.json`` and ``out_dir/report.md``.

    Suites that are not registered are reported as ``{"status": "not available"}``; a suite that raises is
    reported as ``{"status": "error", "reason": ...}`` so one broken suite does not hide the others' results.
    Returns:
        the results.json content (on every process; only process 0 writes files).
    Raises:
        eval.options.SuiteOptionsError: a suite's options do not fit its typed model (nothing is evaluated).
    """
    from eval.checkpoint import LazyCheckpoint
    from eval.options import check_options
    from eval.report import write_report

    for name, options in plan.items():  # a typo in --set fails here, before the checkpoint is loaded
        check_options(name, options)
    dist = _distributed()
    out_dir = Path(out_dir)
    dtype = eval_dtype(recipe)
    if loaded is None:  # loaded when a suite first needs a prediction the cache lacks; a cached run never loads
        import torch

        loaded = LazyCheckpoint(checkpoint, recipe=recipe, device=dist.device,
                                dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    elif dist.device is not None and str(dist.device) != "cpu":
        loaded.model.to(dist.device)
    load = loaded.load if isinstance(loaded, LazyCheckpoint) else lambda: (loaded.model, loaded.processor)
    seed = seed if seed is not None else (loaded.recipe.seed if loaded.recipe is not None else 0)
    cache_dir = out_dir / CACHE_DIR
    own = cache_dir / (f"predictions.rank{dist.rank}.jsonl" if dist.world > 1 else "predictions.jsonl")
    results: dict[str, Any] = {"checkpoint": str(checkpoint),
                               "settings": _settings(loaded.fingerprint, loaded.media, plan, seed, dtype),
                               "suites": {}}
    for name, options in plan.items():
        if name not in SUITES:
            results["suites"][name] = {"status": "not available",
                                       "reason": f"suite {name!r} is not registered (known: {sorted(SUITES)})"}
            continue

        def context(cache: PredictionCache, shard: tuple[int, int]) -> EvalContext:
            # The cache key includes the dtype: bf16 and fp32 scores of one checkpoint are different predictions.
            return EvalContext(checkpoint=Path(str(checkpoint)), fingerprint=f"{loaded.fingerprint}:{dtype}",
                               load=load, media=loaded.media, out_dir=out_dir, cache=cache,
                               options=dict(options), seed=seed, shard=shard)

        try:
            cache = PredictionCache(own)
            res = get_suite(name)(context(cache, (dist.rank, dist.world)))
            # What the shards looked up, summed: the merge pass below is all hits and says nothing about the work.
            hits, misses = dist.total(cache.hits, cache.misses)
            if dist.world > 1:
                dist.barrier()
                if dist.rank == 0:  # merge: every shard's predictions are in the cache files now
                    cache = PredictionCache(own, also_read=tuple(sorted(cache_dir.glob("predictions*.jsonl"))))
                    res = get_suite(name)(context(cache, (0, 1)))
            res = {"status": "ok", **res, "cache": {"hits": hits, "misses": misses}}
            io.dumps_json(res)  # a NaN metric fails this suite by name, not the results.json of all of them
        except Exception as exc:  # reported per suite; the CLI exits non-zero when any suite errs
            res = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        results["suites"][name] = res
    if dist.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(out_dir / "results.json", results, indent=1)
        write_report(results, out_dir)
    dist.barrier()
    return results


def run_recipe_of(run_dir: Path):
    """The recipe of a run folder: the resolved copy saved in its checkpoints (what the run really used, ``--set``
    overrides included), else ``recipes/<name>.yaml`` (a run watched before its first checkpoint), else None."""
    from recipes.schema import RecipeError, load_recipe

    for f in sorted(run_dir.glob("*/checkpoint-*/recipe.yaml")):
        return load_recipe(f)
    try:
        return load_recipe(run_dir.name)
    except RecipeError:
        return None


def run_checkpoints(run_dir: Path, recipe=None) -> list[Path]:
    """Complete checkpoints of a run, in training order (stage order of the recipe, then step)."""
    from train.checkpoints import checkpoints

    stages = [n for n, _ in recipe.active_stages()] if recipe is not None else []
    others = sorted((p.name for p in run_dir.iterdir() if p.is_dir() and p.name not in stages and p.name != "eval"),
                    key=lambda n: (run_dir / n).stat().st_mtime) if run_dir.is_dir() else []
    every = recipe is None or recipe.eval.every_checkpoint
    found: list[Path] = []
    for stage in [*stages, *others]:
        cks = checkpoints(run_dir / stage)
        found += cks if every else cks[-1:]  # eval.every_checkpoint: false -> each stage's last checkpoint only
    return found


def _done(out_dir: Path, settings: dict) -> dict | None:
    f = out_dir / "results.json"
    if not f.is_file():
        return None
    res = json.loads(f.read_text(encoding="utf-8"))
    if res.get("settings") != settings:
        return None
    # A suite that failed (e.g. its data was not built yet) is retried on the next scan; its finished items are
    # cache hits, so the retry only costs what is left.
    return None if any(r.get("status") == "error" for r in res.get("suites", {}).values()) else res


def watch(run_dir: str | Path, *, suites: Iterable[str] | None = None, sets: Iterable[str] = (), once: bool = False,
          interval_s: float = 30.0, timeout_s: float | None = None, include_base: bool = True,
          log=None, data: str | Path | None = None) -> list[tuple[str, dict]]:
    """Evaluate every checkpoint of ``runs/NAME`` once (the base backbone first, as step 0), waiting for new ones
    until every stage has finished (``stage.json``) unless ``once``. Rewrites ``run_dir/report.md`` after each.

    Held-out data come from :func:`resolve_data` (``data``, else the folder the run was trained on). A checkpoint
    whose results were computed from other inputs (annotations, clips, options) is evaluated again.
    One progress bar per scan, over the checkpoints evaluated in it (count and ETA); ``log`` (default: this
    module's logger) gets a line for each.
    Returns:
        (label, results) per evaluated checkpoint, in training order.
    Raises:
        FileNotFoundError: ``run_dir`` does not exist and ``once`` is set.
    """
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    log = log or logging.getLogger(__name__).info
    from eval.checkpoint import checkpoint_identity, checkpoint_recipe
    from eval.report import write_run_report
    from train.checkpoints import read_result

    run_dir = Path(run_dir)
    if once and not run_dir.is_dir():
        from recipes.paths import command

        raise FileNotFoundError(f"{run_dir}: no such run folder (train first: `{command('train ' + run_dir.name)}`)")
    started = time.monotonic()
    while True:
        recipe = run_recipe_of(run_dir) if run_dir.is_dir() else None
        targets: list[tuple[str, str, Path]] = []
        if include_base and recipe is not None and recipe.eval.base:
            targets.append(("base (step 0)", recipe.backbone, run_dir / "eval" / "base"))
        for ck in run_checkpoints(run_dir, recipe) if run_dir.is_dir() else []:
            targets.append((f"{ck.parent.name}/{ck.name}", str(ck), ck / "eval"))
        entries, todo = [], []
        for label, ck, out in targets:
            rec = checkpoint_recipe(ck) if Path(ck).is_dir() else None
            rec = rec or recipe
            plan = suite_plan(rec, suites, sets, data_dir=resolve_data(rec, data, run_dir) if rec else None)
            fp = checkpoint_identity(ck)
            seed = rec.seed if rec is not None else 0
            media = rec.media if rec is not None else MediaSettings()
            res = _done(out, _settings(fp, media, plan, seed, eval_dtype(rec)))
            entries.append((label, res))
            if res is None:
                todo.append((len(entries) - 1, label, ck, out, plan, rec, seed))
        from tqdm import tqdm

        with logging_redirect_tqdm(loggers=[logging.getLogger("eval")]):
            for i, label, ck, out, plan, rec, seed in tqdm(todo, desc=f"eval {run_dir.name}", unit="checkpoint",
                                                           disable=not todo or _distributed().rank != 0):
                log(f"eval: {label} ({ck}) -> {out}")
                entries[i] = (label, evaluate_checkpoint(ck, plan, out, recipe=rec, seed=seed))
        if entries:
            write_run_report(run_dir, entries)
            if recipe is not None:
                from eval.summary import write_summary

                write_summary(run_dir, recipe)  # once every stage's last checkpoint has Thud closed-set predictions
        if once:
            return entries
        finished = recipe is not None and all(read_result(run_dir / n) is not None for n, _ in recipe.active_stages())
        if finished or (timeout_s is not None and time.monotonic() - started > timeout_s):
            return entries
        time.sleep(interval_s)
