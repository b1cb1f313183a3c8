"""Text-prior retention, audio reliance and fragment sufficiency: pure functions of a right/wrong table.

Definitions follow "All That Glitters Is Not Audio: Rethinking Text Priors and Audio Reliance in Audio-Language
Evaluation" (which reports 60-72 % retention and 3.0-4.2 % of audio-reliant items needing the whole clip):

- text-prior retention = accuracy(no_audio) / accuracy(full), per no-audio variant;
- audio reliance = share of items right with full audio and wrong without (per variant);
- fragment sufficiency = among audio-reliant items (right with full audio, wrong under every no-audio variant
  evaluated), the share answered right from at least one fragment; ``needs_whole_clip`` is the complement.

Every figure carries its n and a 95 % interval: Wilson for proportions, a seeded paired bootstrap over items for
the ratio and for the mean per-window accuracy. Values are fractions in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from eval.spectrogram_baselines import Accuracy, wilson

BOOTSTRAP = 2000  # resamples; the interval's Monte Carlo error is well below its width at this count


def proportion(flags: Sequence[bool]) -> dict:
    """{"value", "n", "ci95"} of a share (Wilson interval); value None when n is 0."""
    n, k = len(flags), int(sum(flags))
    return {"value": k / n if n else None, "n": n, "ci95": list(wilson(k, n))}


def _bootstrap(stat: Callable[[np.ndarray], float], n: int, seed: int) -> list[float] | None:
    """95 % percentile interval of ``stat(indices)`` over item resamples; None when undefined everywhere."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    vals = np.array([stat(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)], dtype=float)
    if np.all(np.isnan(vals)):
        return None
    return [float(np.nanpercentile(vals, 2.5)), float(np.nanpercentile(vals, 97.5))]


def retention(full: Sequence[bool], no_audio: Sequence[bool], seed: int = 0) -> dict:
    """accuracy(no_audio) / accuracy(full) on the same items, with a paired bootstrap interval.

    Value None when nothing is right with full audio (the ratio is undefined)."""
    f, z = np.asarray(full, bool), np.asarray(no_audio, bool)

    def ratio(idx: np.ndarray) -> float:
        hits = f[idx].sum()
        return float(z[idx].sum() / hits) if hits else float("nan")

    value = ratio(np.arange(f.size)) if f.size else float("nan")
    return {"value": None if np.isnan(value) else value, "n": int(f.size),
            "ci95": _bootstrap(ratio, int(f.size), seed)}


def mean_with_ci(values: Sequence[float], seed: int = 0) -> dict:
    """Mean of per-item values with a bootstrap interval over items."""
    v = np.asarray(values, float)
    return {"value": float(v.mean()) if v.size else None, "n": int(v.size),
            "ci95": _bootstrap(lambda idx: float(v[idx].mean()), int(v.size), seed)}


def summarise(table: dict[str, dict[str, list[bool]]], spec, seed: int = 0) -> dict:
    """Metrics of one suite under its input conditions.

    Args:
        table: condition name -> item id -> hits (one per window for fragments, one otherwise).
        spec: the suite's :class:`eval.conditions.InputConditions`.
    Returns:
        ``{"n_items", "accuracy": {condition: {accuracy, n, ci95}}, "text_prior_retention": {variant: ...},
        "audio_reliance": {variant: ...}, "audio_reliant": {...}, "fragments": {name: {...}}}``.
    """
    full = {i: h[0] for i, h in table.get("full", {}).items()}
    items = sorted(full)
    out: dict = {"n_items": len(items), "accuracy": {"full": Accuracy.of([full[i] for i in items]).as_dict()},
                 "text_prior_retention": {}, "audio_reliance": {}, "fragments": {}}
    wrong_without: dict[str, bool] = {i: True for i in items}
    for variant in spec.no_audio:
        name = f"no_audio/{variant}"
        got = {i: h[0] for i, h in table.get(name, {}).items()}
        common = [i for i in items if i in got]
        out["accuracy"][name] = Accuracy.of([got[i] for i in common]).as_dict()
        out["text_prior_retention"][variant] = retention([full[i] for i in common], [got[i] for i in common], seed)
        out["audio_reliance"][variant] = proportion([full[i] and not got[i] for i in common])
        for i in items:
            wrong_without[i] = wrong_without[i] and i in got and not got[i]
    reliant = [i for i in items if full[i] and wrong_without[i]] if spec.no_audio else []
    out["audio_reliant"] = {"n": len(reliant), "share": proportion([i in set(reliant) for i in items]),
                            "definition": "right with full audio, wrong under every no_audio variant evaluated"}
    for frag in spec.fragments:
        hits = table.get(frag.name, {})
        done = [i for i in items if i in hits]
        suff = proportion([any(hits[i]) for i in reliant if i in hits])
        lo, hi = suff["ci95"]
        out["fragments"][frag.name] = {
            "window": frag.window, "stride": frag.step, "fill": frag.fill,
            "windows_per_item": float(np.mean([len(hits[i]) for i in done])) if done else None,
            "mean_window_accuracy": mean_with_ci([float(np.mean(hits[i])) for i in done], seed),
            "any_window_accuracy": Accuracy.of([any(hits[i]) for i in done]).as_dict(),
            "sufficiency": suff,
            "needs_whole_clip": {"value": None if suff["value"] is None else 1 - suff["value"], "n": suff["n"],
                                 "ci95": [1 - hi, 1 - lo]},
        }
    return out


def flat_metrics(res: dict) -> dict[str, float | None]:
    """The headline numbers of :func:`summarise` as one flat mapping (what run reports list per checkpoint)."""
    out: dict[str, float | None] = {f"accuracy/{k}": v["accuracy"] if v["n"] else None
                                    for k, v in res["accuracy"].items()}
    out.update({f"text_prior_retention/{k}": v["value"] for k, v in res["text_prior_retention"].items()})
    out.update({f"audio_reliance/{k}": v["value"] for k, v in res["audio_reliance"].items()})
    out.update({f"needs_whole_clip/{k}": v["needs_whole_clip"]["value"] for k, v in res["fragments"].items()})
    return out


def plot_fragments(result: dict, path: Path, title: str) -> Path | None:
    """Accuracy vs fragment length (mean over windows, one line per fill), with full and no-audio accuracy as
    reference lines; None when no fragment was evaluated."""
    frags = result.get("fragments", {})
    if not frags:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for fill in sorted({f["fill"] for f in frags.values()}):
        pts = sorted((f["window"], 100 * (f["mean_window_accuracy"]["value"] or 0)) for f in frags.values()
                     if f["fill"] == fill)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"fragment, rest {fill}")
    styles = iter([("-", "black"), ("--", "grey"), (":", "grey")])
    for name, acc in result["accuracy"].items():
        if acc["n"]:
            style, colour = next(styles, ("-.", "grey"))
            ax.axhline(100 * acc["accuracy"], linestyle=style, color=colour, linewidth=1, label=name)
    ax.set_xlabel("fragment length (s)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{title}: accuracy vs fragment length", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pct(m: dict | None, key: str = "value") -> str:
    v = None if m is None else m.get(key)
    if v is None:
        return "—"
    ci = m.get("ci95")
    return f"{100 * v:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def report_lines(suite: str, res: dict, out_dir: Path) -> list[str]:
    """Markdown of one suite's input-condition metrics (percent, 95 % interval in brackets, n)."""
    from eval.report import _md_table

    lines = [f"### {suite}: text prior and audio reliance", "",
             "Each question asked again without audio and with fragments of it (\"All That Glitters Is Not Audio\"). "
             "Percent, 95 % interval in brackets.", ""]
    rows = [[name, _pct(m, "accuracy"), str(m["n"])] for name, m in res["accuracy"].items()]
    lines += _md_table(["condition", "accuracy", "n"], rows) + [""]
    rows = [[v, _pct(res["text_prior_retention"][v]), _pct(res["audio_reliance"][v]),
             str(res["audio_reliance"][v]["n"])] for v in res["text_prior_retention"]]
    if rows:
        lines += _md_table(["no_audio variant", "text-prior retention", "audio reliance", "n"], rows) + [""]
    if res.get("fragments"):
        lines.append(f"Audio-reliant items (right with full audio, wrong under every no-audio variant): "
                     f"{res['audio_reliant']['n']}.")
        lines.append("")
        rows = [[name, _pct(f["mean_window_accuracy"]), _pct(f["any_window_accuracy"], "accuracy"),
                 _pct(f["sufficiency"]), _pct(f["needs_whole_clip"]), str(f["sufficiency"]["n"])]
                for name, f in res["fragments"].items()]
        lines += _md_table(["fragment", "mean window acc.", "any window acc.", "sufficiency", "needs whole clip",
                            "n reliant"], rows) + [""]
    if res.get("figure"):
        rel = Path(os.path.relpath(res["figure"], out_dir)).as_posix()
        lines += [f"![{suite} accuracy vs fragment length]({rel})", ""]
    return lines


def run_report_lines(entries) -> list[str]:
    """Across checkpoints: full accuracy, retention and reliance per no-audio variant, share needing the whole
    clip, for every suite evaluated under input conditions (percent). ``entries``: (label, results) pairs."""
    from eval.report import _md_table

    lines: list[str] = []
    suites = sorted({n for _, r in entries for n, s in r["suites"].items() if s.get("input_conditions")})
    for name in suites:
        rows = []
        for label, r in entries:
            res = r["suites"].get(name, {}).get("input_conditions")
            if not res:
                continue
            flat = flat_metrics(res)
            rows.append([label, *[("—" if flat.get(k) is None else f"{100 * flat[k]:.1f}") for k in flat]])
            header = list(flat)
        lines += [f"## {name}: text prior and audio reliance (%)", ""] + _md_table(["checkpoint", *header], rows)
        lines.append("")
    return lines
