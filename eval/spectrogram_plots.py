"""The spectrogram benchmark across finetuning: accuracy per condition against epoch (PNG, matplotlib Agg), with
95% intervals, chance and the reference rows (ASR, people) as horizontal lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from eval.thud.plots import _plt, _save


def checkpoint_epoch(checkpoint: str) -> float | None:
    """The epoch a trainer checkpoint was saved at (its ``trainer_state.json``); 0 for anything that is not a
    checkpoint folder (the base backbone), None when the state file cannot be read."""
    state = Path(checkpoint) / "trainer_state.json"
    if not Path(checkpoint).is_dir() or not state.is_file():
        return 0.0 if not (Path(checkpoint) / "adapter_config.json").is_file() else None
    try:
        return float(json.loads(state.read_text(encoding="utf-8"))["epoch"])
    except (ValueError, KeyError):
        return None


def plot_epochs(points: Sequence[tuple[float, dict]], path: Path, title: str = "spectrogram_mcq") -> Path | None:
    """Accuracy % of each condition (solid) and ablation (dashed) against epoch, 95% intervals as error bars;
    chance, ASR and human as horizontal lines (dotted when the published figure stands in). ``points`` are
    (epoch, suite results) in training order; None when fewer than two epochs are known."""
    points = sorted(points, key=lambda p: p[0])
    if len(points) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [e for e, _ in points]
    for section, style in (("conditions", "-o"), ("ablations", "--x")):
        names = list(dict.fromkeys(n for _, res in points for n in res.get(section, {})))
        for name in names:
            ms = [res.get(section, {}).get(name) for _, res in points]
            ms = [m if m and m.get("accuracy") is not None else None for m in ms]
            xs = [e for e, m in zip(epochs, ms) if m]
            ys = [100 * m["accuracy"] for m in ms if m]
            # An interval is drawn where the result has one (older results.json files have only the accuracy).
            ci = [m.get("ci95") or (m["accuracy"], m["accuracy"]) for m in ms if m]
            err = [[100 * (m["accuracy"] - c[0]) for m, c in zip([m for m in ms if m], ci)],
                   [100 * (c[1] - m["accuracy"]) for m, c in zip([m for m in ms if m], ci)]]
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=2, linewidth=1, markersize=3, label=name)
    last = points[-1][1]
    ax.axhline(100 * last.get("chance", 0.25), color="grey", linewidth=1, label="chance")
    for name, colour in (("asr", "#2f7f2f"), ("human", "#7f2f7f")):
        ref = last.get("references", {}).get(name)
        if ref and ref.get("accuracy") is not None:
            tag = " (published)" if ref.get("published") else ""
            ax.axhline(100 * ref["accuracy"], color=colour, linestyle=":" if tag else "-", linewidth=1,
                       label=f"{name}{tag}")
    ax.set_xlabel("finetuning epoch")
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(plt, fig, ax, title, path)
