"""Figure 3-, 4- and 5-style plots of Thud metrics (as in "When Vision Speaks for Sound"), PNG via matplotlib's
Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path

AXES_TITLES = {"mute_hallucination": "Mute\nhallucination", "false_silence": "False\nsilence",
               "swap_false_match": "Swap\nfalse match", "swap_false_mismatch": "Swap\nfalse mismatch",
               "shift_miss": "Shift\nmiss", "direction_error": "Direction\nerror"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, title: str, path: Path) -> Path:
    """Title, tight layout, PNG at 100 dpi, and the figure closed (a long eval watch would otherwise pile them up)."""
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_axes(metrics: dict, path: Path, title: str = "") -> Path:
    """Figure 3: the six failure axes as bars (0-100 %, lower is better); n under each bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(AXES_TITLES)
    vals = [metrics["axes"][k]["value"] or 0.0 for k in names]
    bars = ax.bar(range(len(names)), vals, color="#c0504d")
    for i, k in enumerate(names):
        v = metrics["axes"][k]["value"]
        ax.text(i, (v or 0) + 2, "n/a" if v is None else f"{v:.0f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(names)), [f"{AXES_TITLES[k]}\n(n={metrics['axes'][k]['n']})" for k in names], fontsize=7)
    ax.set_ylim(0, 110)
    ax.set_ylabel("% (lower is better)")
    return _save(plt, fig, ax, title or "Failure axes (Figure 3)", path)


def plot_decomposition(metrics: dict, path: Path, title: str = "") -> Path:
    """Figure 4: stacked outcome shares for Mute, Swap and Shift."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colors = {"correct": "#4f81bd", "correct_synced": "#4f81bd", "correct_shift": "#7ea6d8",
              "hallucinated_synced": "#c0504d", "missed_shift": "#c0504d", "hallucinated_shift": "#f79646",
              "wrong_direction": "#f79646", "false_shift": "#9bbb59", "other": "#a5a5a5"}
    groups = list(metrics["decomposition"])
    seen = set()
    for gi, g in enumerate(groups):
        left = 0.0
        for k, v in metrics["decomposition"][g].items():
            if k == "n" or not v:
                continue
            ax.barh(gi, v, left=left, color=colors.get(k, "#777777"), label=None if k in seen else k)
            seen.add(k)
            left += v
    ax.set_yticks(range(len(groups)), [f"{g} (n={metrics['decomposition'][g]['n']})" for g in groups])
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of answers")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(plt, fig, ax, title or "Answer decomposition (Figure 4)", path)


def plot_bands(metrics: dict, path: Path, title: str = "") -> Path:
    """Figure 5: temporal_sync accuracy per |Δ| band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(metrics["bands"])
    vals = [metrics["bands"][b]["accuracy"] for b in names]
    xs = [i for i, v in enumerate(vals) if v is not None]
    ax.plot(xs, [vals[i] for i in xs], marker="o")
    ax.set_xticks(range(len(names)), [f"{b}\nn={metrics['bands'][b]['n']}" for b in names], fontsize=7)
    ax.set_ylim(-5, 105)
    ax.set_ylabel("temporal_sync accuracy %")
    ax.set_xlabel("|offset| band (s)")
    return _save(plt, fig, ax, title or "Accuracy by offset band (Figure 5)", path)


def plot_all(metrics: dict, out_dir: Path, prefix: str) -> dict[str, Path]:
    """The three figures for one set of metrics: {"fig3": path, "fig4": path, "fig5": path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"fig3": plot_axes(metrics, out_dir / f"{prefix}_fig3_axes.png"),
            "fig4": plot_decomposition(metrics, out_dir / f"{prefix}_fig4_decomposition.png"),
            "fig5": plot_bands(metrics, out_dir / f"{prefix}_fig5_bands.png")}
