"""Thud metrics (correctness per dimension, and Figures 3-5 of "When Vision Speaks for Sound"): a pure function
of prediction rows.

Every percentage is 0-100 and comes with the count it was computed over; a metric whose count is zero is ``None``
(never 0, which would read as a measured failure).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from eval.stats import combined_pct, wilson_pct
from eval.thud.records import (DIMENSIONS, INTERVENED, SHIFT_LABELS, SOUND_PRESENT, PredictionRow, is_correct)

# "When Vision Speaks for Sound", Figure 5: default |Δ| band edges in seconds -> bands (0, 0.5], (0.5, 1.0],
# (1.0, 2.0], (2.0, ∞).
DEFAULT_BAND_EDGES: tuple[float, ...] = (0.5, 1.0, 2.0)


def _pct(k: int, n: int) -> float | None:
    return None if n == 0 else 100.0 * k / n


def _share(rows: Sequence[PredictionRow], pred) -> dict:
    k = sum(1 for r in rows if pred(r))
    return {"value": _pct(k, len(rows)), "n": len(rows), "ci95": wilson_pct(k, len(rows))}


SYNC_CLASSES: tuple[str, ...] = ("synced", "delayed", "early")


def sync_class(row: PredictionRow) -> str:
    """The class a temporal_sync row belongs to for Sync: ``synced`` (original), ``delayed`` (Δ > 0), ``early``."""
    if row.condition == "original":
        return "synced"
    return "delayed" if row.offset > 0 else "early"


def sync_metric(rows: Iterable[PredictionRow]) -> dict:
    """Sync: class-balanced temporal_sync accuracy, the mean of the synced, delayed and early class accuracies.

    Inferred from "When Vision Speaks for Sound", Table 2: Qwen3-Omni's 34.3 is (100 + 1.4 + 1.4) / 3, what a
    model that always answers "synced" scores when it gets 1.4 % of shifted clips right. Pooling all rows instead
    would let the share of originals in the set decide the number. ``value`` is None unless all three classes are
    present (a missing class has no accuracy to average).
    """
    per: dict[str, list[bool]] = {c: [] for c in SYNC_CLASSES}
    for r in rows:
        if r.dimension == "temporal_sync":
            per[sync_class(r)].append(is_correct(r))
    classes = {c: {"value": _pct(sum(v), len(v)), "n": len(v), "ci95": wilson_pct(sum(v), len(v))}
               for c, v in per.items()}
    complete = all(per[c] for c in SYNC_CLASSES)
    terms = [(1 / 3, sum(v), len(v)) for v in per.values()]
    return {"value": statistics.fmean(classes[c]["value"] for c in SYNC_CLASSES) if complete else None,
            "n": sum(len(v) for v in per.values()), "ci95": combined_pct(terms) if complete else None,
            "classes": classes}


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"


def band_names(edges: Sequence[float] = DEFAULT_BAND_EDGES) -> list[str]:
    """Names of the Figure 5 bands: ``synced`` then ``(lo, hi]`` per interval and ``(last, inf)``."""
    bounds = [0.0, *edges, math.inf]
    names = ["synced"]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        names.append(f"({_fmt(lo)}, {_fmt(hi)}{')' if math.isinf(hi) else ']'}")
    return names


def band_of(offset: float | None, edges: Sequence[float] = DEFAULT_BAND_EDGES) -> str:
    """The band of a shift's |Δ| (``synced`` for no shift)."""
    names = band_names(edges)
    if not offset:
        return names[0]
    mag = abs(offset)
    for i, hi in enumerate([*edges, math.inf]):
        if mag <= hi:
            return names[i + 1]
    return names[-1]  # pragma: no cover - inf bounds everything


def _decompose(rows: Sequence[PredictionRow], classify) -> dict:
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[classify(r)] += 1
    return counts


def compute_metrics(rows: Iterable[PredictionRow | dict], band_edges: Sequence[float] = DEFAULT_BAND_EDGES) -> dict:
    """All Thud metrics (docs/metrics.md) from labelled prediction rows.

    Args:
        rows: :class:`PredictionRow` or dicts in the prediction-row format (:class:`PredictionRow`).
        band_edges: upper edges (seconds) of the |Δ| bands of Figure 5; the last band is open.
    Returns:
        A JSON-able dict: one entry per dimension present (``accuracy_original``, ``accuracy_intervened``,
        ``pair_accuracy``, ``n`` = source clips with both an original and an intervened answer, ``n_original``,
        ``n_intervened``, ``ci95_*`` 95% intervals in percent), plus ``avg_gap``, ``sync``, ``axes``,
        ``decomposition``, ``bands``, ``offset_error``, ``undetermined_rate`` and ``n_rows``.
    Raises:
        pydantic.ValidationError: a row that is not a valid prediction.
    """
    rows = [r if isinstance(r, PredictionRow) else PredictionRow.model_validate(r) for r in rows]
    by_dim: dict[str, list[PredictionRow]] = defaultdict(list)
    for r in rows:
        by_dim[r.dimension].append(r)
    out: dict = {"n_rows": len(rows)}

    gaps, gap_terms = [], []
    for dim in DIMENSIONS:
        drows = by_dim.get(dim, [])
        if not drows:
            continue
        orig = [r for r in drows if r.condition == "original"]
        inter = [r for r in drows if r.condition == INTERVENED[dim]]
        k_o, k_i = sum(map(is_correct, orig)), sum(map(is_correct, inter))
        acc_o, acc_i = _pct(k_o, len(orig)), _pct(k_i, len(inter))
        # Pair accuracy: share of source clips whose original AND intervened answers are all correct.
        # With several intervened answers per clip (e.g. several shifts) every one of them must be right.
        per_clip: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"o": [], "i": []})
        for r in orig:
            per_clip[r.source_id]["o"].append(is_correct(r))
        for r in inter:
            per_clip[r.source_id]["i"].append(is_correct(r))
        paired = [v for v in per_clip.values() if v["o"] and v["i"]]
        both = sum(1 for v in paired if all(v["o"]) and all(v["i"]))
        out[dim] = {"accuracy_original": acc_o, "accuracy_intervened": acc_i,
                    "pair_accuracy": _pct(both, len(paired)), "n": len(paired),
                    "n_original": len(orig), "n_intervened": len(inter),
                    "ci95_original": wilson_pct(k_o, len(orig)), "ci95_intervened": wilson_pct(k_i, len(inter)),
                    "ci95_pair": wilson_pct(both, len(paired))}
        if acc_o is not None and acc_i is not None:
            gaps.append(acc_o - acc_i)
            gap_terms += [(1.0, k_o, len(orig)), (-1.0, k_i, len(inter))]
    # Avg Gap (inferred from "When Vision Speaks for Sound", Table 1: Gemini (8.4 + 86.6 + 75.3) / 3 = 56.8): mean
    # over dimensions of accuracy original - accuracy intervened.
    out["avg_gap"] = {"value": statistics.fmean(gaps) if gaps else None, "n": len(gaps),
                      "ci95": combined_pct([(w / len(gaps), k, n) for w, k, n in gap_terms], -100.0, 100.0)
                      if gaps else None}
    out["sync"] = sync_metric(rows)

    def cond(dim: str, c: str) -> list[PredictionRow]:
        return [r for r in by_dim.get(dim, []) if r.condition == c]

    shifted = cond("temporal_sync", "shift")
    directed = [r for r in shifted if r.label in SHIFT_LABELS]
    # Figure 3 axes of "When Vision Speaks for Sound" (inferred definitions).
    out["axes"] = {
        "mute_hallucination": _share(cond("audio_existence", "mute"), lambda r: r.label in SOUND_PRESENT),
        "false_silence": _share(cond("audio_existence", "original"), lambda r: r.label == "silent"),
        "swap_false_match": _share(cond("sound_consistency", "swap"), lambda r: r.label in ("synced", "delayed",
                                                                                             "early")),
        "swap_false_mismatch": _share(cond("sound_consistency", "original"), lambda r: r.label == "mismatched"),
        "shift_miss": _share(shifted, lambda r: r.label == "synced"),
        "direction_error": _share(directed, lambda r: not is_correct(r)),
    }

    # Figure 4 decomposition: shares of each outcome, summing to 100 per group.
    def hallucination(correct_label: str):
        def classify(r: PredictionRow) -> str:
            if r.label == correct_label:
                return "correct"
            if r.label == "synced":
                return "hallucinated_synced"
            if r.label in SHIFT_LABELS:
                return "hallucinated_shift"
            return "other"
        return classify

    def shift_outcome(r: PredictionRow) -> str:
        if r.condition == "original":
            return {"synced": "correct_synced"}.get(r.label, "false_shift" if r.label in SHIFT_LABELS else "other")
        if r.label == "synced":
            return "missed_shift"
        if r.label in SHIFT_LABELS:
            return "correct_shift" if is_correct(r) else "wrong_direction"
        return "other"

    groups = {
        "mute": (cond("audio_existence", "mute"), hallucination("silent"),
                 ("correct", "hallucinated_synced", "hallucinated_shift", "other")),
        "swap": (cond("sound_consistency", "swap"), hallucination("mismatched"),
                 ("correct", "hallucinated_synced", "hallucinated_shift", "other")),
        "shift": (by_dim.get("temporal_sync", []), shift_outcome,
                  ("correct_synced", "correct_shift", "wrong_direction", "missed_shift", "false_shift", "other")),
    }
    out["decomposition"] = {}
    for name, (grows, classify, keys) in groups.items():
        counts = _decompose(grows, classify)
        out["decomposition"][name] = {"n": len(grows), **{k: _pct(counts.get(k, 0), len(grows)) for k in keys}}

    # Figure 5: temporal_sync accuracy per |Δ| band; the "synced" band is the original clips.
    bands: dict[str, list[PredictionRow]] = {name: [] for name in band_names(band_edges)}
    for r in by_dim.get("temporal_sync", []):
        bands[band_of(r.offset if r.condition == "shift" else None, band_edges)].append(r)
    out["bands"] = {name: {"accuracy": _pct(sum(map(is_correct, b)), len(b)), "n": len(b),
                           "ci95": wilson_pct(sum(map(is_correct, b)), len(b))} for name, b in bands.items()}

    # Offset error: shifted clips answered delayed/early with a number, |predicted - |Δ||.
    errs = [abs(abs(r.predicted_offset) - abs(r.offset)) for r in directed if r.predicted_offset is not None]
    out["offset_error"] = {
        "n": len(errs),
        "mean": statistics.fmean(errs) if errs else None,
        "median": statistics.median(errs) if errs else None,
        "within_0_5": _pct(sum(e <= 0.5 for e in errs), len(errs)),
        "within_1_0": _pct(sum(e <= 1.0 for e in errs), len(errs)),
    }

    by_cond: dict[str, list[PredictionRow]] = defaultdict(list)
    for r in rows:
        by_cond[r.condition].append(r)
    out["undetermined_rate"] = {c: _share(by_cond[c], lambda r: r.label == "undetermined")
                                for c in ("original", "shift", "mute", "swap") if by_cond.get(c)}
    out["undetermined_rate"]["all"] = _share(rows, lambda r: r.label == "undetermined")
    return out


def read_predictions(path: str | Path) -> list[PredictionRow]:
    """Read a predictions JSONL (one :class:`PredictionRow` per line). Raises ValueError naming the file and line
    of a bad row."""
    from pydantic import ValidationError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file does not exist")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(PredictionRow.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ValueError(f"{path}:{lineno}: not a Thud prediction row ({exc})") from exc
    return rows
