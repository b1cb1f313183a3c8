"""Suite ``lmms_eval``: general video understanding (the alignment tax of preference tuning) measured by lmms-eval.

"Thud" checks that tuning a model to listen does not cost it general video understanding (Video-MME, LVBench,
WorldSense, Daily-Omni). This suite runs any lmms-eval task on the checkpoint under evaluation: lmms-eval's own task
definitions pick the documents, build the prompts and score the answers with their own metrics and aggregations;
Harken only answers each request, through :class:`eval.lmms_model.HarkenLmms` (the checkpoint as loaded by
``eval run`` / ``eval watch``, clips decoded and encoded with the recipe's media block). lmms-eval's own output
(aggregated results and one samples file per task) is written under ``<out>/lmms_eval/``; the headline metrics go
to ``results.json`` and the report like every suite's.

lmms-eval is an optional extra (``pip install -e '.[general]'``, installed by ``make install``): its imports happen
only when this suite runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from eval.context import EvalContext

SUITE = "lmms_eval"
# Where lmms-eval's own result and samples files go, inside the checkpoint's eval folder.
OUTPUT_DIR = "lmms_eval"
MODEL_NAME = "harken"


class LmmsEvalOptions(BaseModel):
    """Options of the ``lmms_eval`` suite."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(default_factory=list, description="lmms-eval task (or group) names, e.g. videomme, "
                                                               "lvbench, worldsense; required")
    include_path: str | None = Field(None, description="folder of extra task YAMLs (local tasks, local datasets)")
    limit: int | None = Field(None, ge=1, description="only the first N documents of each task (smoke runs)")
    max_new_tokens: int | None = Field(None, ge=1, description="cap on each task's own max_new_tokens")


def _import_lmms_eval():
    try:
        import lmms_eval  # noqa: F401
    except ImportError as exc:
        raise ImportError("the lmms_eval suite needs lmms-eval: pip install -e '.[general]' (make install "
                          "installs it)") from exc


def task_manager(include_path: str | None):
    """lmms-eval's task index: its bundled tasks plus the YAMLs under ``include_path``.

    Raises:
        FileNotFoundError: ``include_path`` is not a folder.
    """
    from lmms_eval.tasks import TaskManager

    if include_path is not None and not Path(include_path).is_dir():
        raise FileNotFoundError(f"lmms_eval.include_path: {include_path} is not a folder of task YAMLs")
    return TaskManager("WARNING", include_path=str(Path(include_path).resolve()) if include_path else None)


def task_names(manager, tasks: list[str]) -> list[str]:
    """The requested tasks as lmms-eval knows them.

    Raises:
        ValueError: names lmms-eval does not know (a typo must not pass as an empty evaluation).
    """
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"lmms_eval.tasks: unknown task(s) {', '.join(unknown)}; list them with `lmms-eval --tasks "
                         "list`, or point lmms_eval.include_path at the folder of their YAMLs")
    return list(tasks)


def headline(task_results: dict) -> dict[str, float]:
    """A task's numeric metrics from lmms-eval's ``results[task]`` (``"metric,filter": value``), keyed
    ``metric`` (``metric,filter`` when the filter is not ``none``), standard errors and aliases left out."""
    out = {}
    for key, value in task_results.items():
        if "," not in key or "_stderr" in key or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metric, filt = key.split(",", 1)
        out[metric if filt == "none" else key] = float(value)
    return out


def sample_scores(samples: list[dict], metrics: list[str]) -> list[dict]:
    """One row per scored document: its id, lmms-eval's filtered answer, and each metric's per-sample value."""
    rows = []
    for s in samples:
        resp = s.get("filtered_resps") or s.get("resps") or [""]
        while isinstance(resp, list) and resp:
            resp = resp[0]
        rows.append({"doc_id": s.get("doc_id"), "answer": resp if isinstance(resp, str) else str(resp),
                     **{m: s[m] for m in metrics if m in s}})
    return rows


def run(ctx: EvalContext) -> dict:
    """Evaluate ``ctx.model`` on lmms-eval tasks; returns ``{"metrics", "tasks", "output", "settings"}``.

    ``metrics`` is ``{"<task>/<metric>": value}`` as lmms-eval aggregates it; ``tasks[<task>]`` has the metrics,
    ``n`` (documents scored) and ``samples`` (per-document answers and metric values).
    Raises:
        ImportError: lmms-eval is not installed.
        ValueError: no or unknown tasks, a data-parallel launch, or a request the wrapper cannot answer.
    """
    opts = LmmsEvalOptions.model_validate(ctx.options)
    _import_lmms_eval()
    if ctx.shard[1] > 1:
        # lmms-eval shards documents and gathers results over torch.distributed itself; Harken's own sharding
        # (every process, then a merge pass on process 0 alone) would leave its collectives waiting forever.
        raise ValueError("the lmms_eval suite runs in one process: evaluate it with `python -m eval run` (no "
                         "accelerate launch), or start lmms-eval's own launcher")
    from lmms_eval import evaluator
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    from eval.lmms_model import HarkenLmms

    if not opts.tasks:  # before lmms-eval indexes its hundreds of task folders
        raise ValueError("lmms_eval.tasks: name at least one lmms-eval task, e.g. --set 'lmms_eval.tasks=[videomme]'")
    manager = task_manager(opts.include_path)
    names = task_names(manager, opts.tasks)
    out_dir = ctx.out_dir / OUTPUT_DIR
    tracker = EvaluationTracker(output_path=str(out_dir))
    lm = HarkenLmms(ctx, max_new_tokens=opts.max_new_tokens)
    stamp = get_datetime_str()
    res = evaluator.simple_evaluate(model=lm, model_args=f"model={MODEL_NAME}", tasks=names, limit=opts.limit,
                                    task_manager=manager, evaluation_tracker=tracker, log_samples=True,
                                    random_seed=ctx.seed, numpy_random_seed=ctx.seed, torch_random_seed=ctx.seed,
                                    fewshot_random_seed=ctx.seed, verbosity="WARNING", process_docs_parallel=1,
                                    datetime_str=stamp)
    if res is None:
        raise ValueError("lmms-eval returned no results (it returns them on process 0 only)")
    samples = res.pop("samples")
    tracker.save_results_aggregated(results=res, samples=samples, datetime_str=stamp)
    for task in res["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    folder = out_dir / MODEL_NAME  # lmms-eval's layout: <output_path>/<model name>/<date>_results.json, ...
    tasks, metrics = {}, {}
    for task, task_results in res["results"].items():
        scores = headline(task_results)
        rows = sample_scores(samples.get(task, []), [k.split(",")[0] for k in scores])
        tasks[task] = {"metrics": scores, "n": len(rows), "samples": rows}
        if task in samples:
            tasks[task]["samples_file"] = str(folder / f"{tracker.date_id}_samples_{task}.jsonl")
        metrics.update({f"{task}/{k}": v for k, v in scores.items()})
    return {"metrics": metrics, "tasks": tasks, "output": str(folder / f"{tracker.date_id}_results.json"),
            "settings": {"tasks": names, "limit": opts.limit, "max_new_tokens": opts.max_new_tokens,
                         "include_path": opts.include_path, "lmms_eval": _version()}}


def sample_outcome(value) -> bool | None:
    """A per-document metric value as right/wrong when it is one (0 or 1, or a dict whose ``score`` is, as
    Video-MME's), else None."""
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return bool(value)
    return None


def compare_cells(res: dict) -> dict:
    """``eval compare`` columns of this suite: one per task (``task/metric`` when a task has several metrics).

    When every document's metric value is right/wrong the cell is percent correct with a Wilson interval and
    per-document outcomes (so the paired test applies); otherwise it is lmms-eval's aggregate as reported.
    """
    from eval.compare import Cell
    from eval.stats import wilson_pct

    cells = {}
    for task, t in res.get("tasks", {}).items():
        for metric, value in t["metrics"].items():
            column = task if len(t["metrics"]) == 1 else f"{task}/{metric}"
            outcomes = {str(s["doc_id"]): sample_outcome(s.get(metric)) for s in t.get("samples", [])}
            if outcomes and None not in outcomes.values():
                k, n = sum(outcomes.values()), len(outcomes)
                cells[column] = Cell(100.0 * k / n, wilson_pct(k, n), n, outcomes)
            else:
                cells[column] = Cell(value, None, t["n"])
    return cells


def _version() -> str:
    from importlib.metadata import version

    return version("lmms-eval")


def report_lines(res: dict) -> list[str]:
    """The suite's section of ``report.md``: one row per task and metric, with the documents scored."""
    lines = [f"## {SUITE} (general video understanding, scored by lmms-eval {res['settings'].get('lmms_eval')})", "",
             "| task | metric | value | n |", "|---|---|---|---|"]
    for task, t in res.get("tasks", {}).items():
        for metric, value in t["metrics"].items():
            lines.append(f"| {task} | {metric} | {value:.4g} | {t['n']} |")
    return lines + ["", f"lmms-eval's own results and samples: `{res.get('output')}`", ""]
