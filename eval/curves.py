"""Curves of a run's headline metrics against the training step, across stages, for ``runs/NAME/report.md``.

One figure, one panel per headline: Thud's Avg Gap, its intervened accuracy per dimension (Shift, Mute, Swap), the
out-of-distribution sync set's accuracy per offset band when it was evaluated, and the spectrogram benchmark's
accuracy per condition. The step axis runs on across stages (the second stage's step 4 is drawn at the first
stage's last step + 4), with a dashed line where each stage begins. Numbers are read from results.json.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

# Thud dimension -> the intervention its intervened accuracy measures (the headline name used in reports).
INTERVENED = {"temporal_sync": "Shift", "audio_existence": "Mute", "sound_consistency": "Swap"}
_LABEL = re.compile(r"(?P<stage>[^/]+)/checkpoint-(?P<step>\d+)$")


def global_steps(labels: Sequence[str]) -> tuple[list[int | None], list[tuple[str, int]]]:
    """Training step of each entry label across stages, and (stage, first global step) of each stage.

    ``base (step 0)`` is step 0; ``STAGE/checkpoint-N`` is N plus the last step of the stages before it (labels
    come in training order). Other labels get None.
    """
    offset, current, last = 0, None, 0
    steps: list[int | None] = []
    starts: list[tuple[str, int]] = []
    for label in labels:
        if label.startswith("base"):
            steps.append(0)
            continue
        m = _LABEL.match(label)
        if m is None:
            steps.append(None)
            continue
        stage, step = m["stage"], int(m["step"])
        if stage != current:
            offset, current = last, stage
            starts.append((stage, offset))
        steps.append(offset + step)
        last = max(last, offset + step)
    return steps, starts


def curve_series(entries: Sequence[tuple[str, dict]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """panel -> series -> [(step, value %)] for every headline metric found in the entries' results."""
    steps, _ = global_steps([label for label, _ in entries])
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {}

    def add(panel: str, series: str, step: int, value) -> None:
        if value is not None:
            panels.setdefault(panel, {}).setdefault(series, []).append((step, float(value)))

    for step, (_, res) in zip(steps, entries):
        if step is None:
            continue
        thud = res.get("suites", {}).get("thud", {})
        for mode, m in thud.get("metrics", {}).items():
            add("Thud Avg Gap", mode, step, m.get("avg_gap", {}).get("value"))
            for dim, name in INTERVENED.items():
                add("Thud intervened accuracy %", f"{name} ({mode})", step, m.get(dim, {}).get("accuracy_intervened"))
        for mode, bands in (thud.get("sync_set") or {}).items():
            for band, b in bands.items():
                add("Sync set accuracy %", f"{band} ({mode})", step, b.get("accuracy"))
        spec = res.get("suites", {}).get("spectrogram_mcq", {})
        if spec.get("status", "ok") == "ok":
            for cond, c in spec.get("conditions", {}).items():
                acc = c.get("accuracy")
                add("Spectrogram MCQ accuracy %", cond, step, None if acc is None else 100 * acc)
    return panels


def plot_curves(run_dir: str | Path, entries: Sequence[tuple[str, dict]]) -> Path | None:
    """Draw :func:`curve_series` into ``run_dir/figures/curves.png``; None when no checkpoint has a headline."""
    panels = curve_series(entries)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    import matplotlib.pyplot as plt

    _, starts = global_steps([label for label, _ in entries])
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, series) in zip(axes[:, 0], panels.items()):
        for name, points in series.items():
            xs, ys = zip(*sorted(points))
            # Free-form answers dashed, so closed-set and free-form lines of one metric read as a pair.
            ax.plot(xs, ys, marker="o", markersize=4, linestyle="--" if "free_form" in name else "-", label=name)
        for stage, start in starts:
            ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(stage, (start, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color="grey")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("training step (across stages)")
    fig.tight_layout()
    out = Path(run_dir) / "figures" / "curves.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def curves_section(run_dir: str | Path, entries: Sequence[tuple[str, dict]]) -> list[str]:
    """Markdown lines of the curves figure for the run report (empty when there is nothing to draw)."""
    path = plot_curves(run_dir, entries)
    if path is None:
        return []
    return ["## Headline metrics across training", "",
            "Step 0 is the base backbone; dashed lines mark where each stage starts.", "",
            f"![headline metrics against training step]({path.relative_to(Path(run_dir)).as_posix()})", ""]
