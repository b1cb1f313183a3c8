"""Run-level summary of Thud closed-set results: one entry per training stage (branch), from its last checkpoint.

``runs/NAME/summary.json`` holds ``{"branches": {stage: metrics}, "checkpoints": {stage: path}}`` where ``metrics``
is exactly what ``python -m eval metrics thud <that checkpoint>/eval/thud/predictions_closed_set.jsonl`` prints;
``runs/NAME/summary.png`` puts the stages side by side: accuracy on original and intervened clips per dimension,
and temporal-sync accuracy per offset band. ``eval watch`` writes both once every stage's last checkpoint has Thud
closed-set predictions; :func:`target_figures` reduces a summary to the headline numbers the benchmark reports.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

PREDICTIONS = Path("eval") / "thud" / "predictions_closed_set.jsonl"  # under a checkpoint folder


def stage_predictions(run_dir: str | Path, recipe) -> dict[str, Path]:
    """``{stage: closed-set predictions file}`` of each enabled stage's last checkpoint that has one."""
    from train.checkpoints import checkpoints

    out = {}
    for name, _ in recipe.active_stages():
        cks = checkpoints(Path(run_dir) / name)
        if cks and (cks[-1] / PREDICTIONS).is_file():
            out[name] = cks[-1] / PREDICTIONS
    return out


def write_summary(run_dir: str | Path, recipe) -> Path | None:
    """Write ``summary.json`` and ``summary.png`` into ``run_dir`` when every stage's last checkpoint has Thud
    closed-set predictions; returns the JSON's path, or None (nothing written) while some are missing."""
    from eval.thud.metrics import compute_metrics, read_predictions

    run_dir = Path(run_dir)
    found = stage_predictions(run_dir, recipe)
    if not found or len(found) < len(recipe.active_stages()):
        return None
    summary = {"branches": {n: compute_metrics(read_predictions(p)) for n, p in found.items()},
               "checkpoints": {n: str(p.parent.parent.parent) for n, p in found.items()}}
    path = run_dir / "summary.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    tmp.replace(path)
    plot_summary(summary["branches"], run_dir / "summary.png", title=recipe.name)
    return path


def _dims(metrics: dict) -> list[str]:
    from eval.thud.records import DIMENSIONS

    return [d for d in DIMENSIONS if d in metrics]


def target_figures(metrics: dict) -> dict[str, float | None]:
    """Headline numbers of one branch: the lowest original accuracy over dimensions, the mean and lowest intervened
    accuracy, Avg Gap, and temporal-sync accuracy on the smallest and the largest offset band (percent)."""
    dims = _dims(metrics)
    orig = [metrics[d]["accuracy_original"] for d in dims if metrics[d]["accuracy_original"] is not None]
    inter = [metrics[d]["accuracy_intervened"] for d in dims if metrics[d]["accuracy_intervened"] is not None]
    bands = [b for name, b in metrics.get("bands", {}).items() if name != "synced" and b["n"]]
    return {
        "min_original": min(orig) if orig else None,
        "mean_intervened": statistics.fmean(inter) if inter else None,
        "min_intervened": min(inter) if inter else None,
        "avg_gap": metrics.get("avg_gap", {}).get("value"),
        "shift_smallest_band": bands[0]["accuracy"] if bands else None,
        "shift_largest_band": bands[-1]["accuracy"] if bands else None,
    }


def plot_summary(branches: dict[str, dict], path: Path, title: str = "") -> Path:
    """Two panels: per dimension, original (light) and intervened (dark) accuracy of every branch side by side;
    temporal-sync accuracy per |offset| band of every branch."""
    from eval.thud.plots import _plt

    plt = _plt()
    names = list(branches)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    dims = _dims(next(iter(branches.values())))
    width = 0.8 / max(1, 2 * len(names))
    colours = plt.get_cmap("tab10")
    for j, name in enumerate(names):
        m = branches[name]
        for k, key in enumerate(("accuracy_original", "accuracy_intervened")):
            xs = [i + (2 * j + k - len(names)) * width + width / 2 for i in range(len(dims))]
            vals = [m[d][key] or 0.0 for d in dims]
            left.bar(xs, vals, width, color=colours(j), alpha=0.45 if k == 0 else 1.0,
                     label=f"{name} {'original' if k == 0 else 'intervened'}")
    left.set_xticks(range(len(dims)), [d.replace("_", " ") for d in dims])
    left.set_ylim(0, 135)  # headroom for the legend above the 100 % bars
    left.set_ylabel("accuracy (%)")
    left.legend(fontsize=6, ncol=len(names), loc="upper center")
    left.set_title("original vs intervened")
    for j, name in enumerate(names):
        bands = {b: v for b, v in branches[name].get("bands", {}).items() if b != "synced"}
        right.plot(range(len(bands)), [v["accuracy"] if v["accuracy"] is not None else float("nan")
                                       for v in bands.values()], marker="o", color=colours(j), label=name)
        right.set_xticks(range(len(bands)), list(bands), fontsize=7)
    right.set_ylim(0, 105)
    right.set_xlabel("|offset| band (s)")
    right.set_title("Shift accuracy per offset band")
    right.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
