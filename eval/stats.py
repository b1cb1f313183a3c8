"""Intervals and paired tests shared by every suite's metrics and reports.

Single proportions get a Wilson score interval; a mean or difference of independent proportions (Sync, Avg Gap)
gets a normal approximation whose per-proportion variance uses the Agresti-Coull estimate (k + 2) / (n + 4), so a
class scored 0 % or 100 % still contributes its uncertainty. Paired comparisons of two models on the same items use
the exact McNemar test.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

Z95 = 1.96  # two-sided 95 %, as rounded in the literature (and bit-for-bit what earlier reports used)


def wilson(correct: int, n: int, z: float | None = None) -> tuple[float, float]:
    """Wilson score interval of a proportion (well-behaved at small n and near 0 or 1), by scipy's binomial test:
    95 % by default, else at the two-sided level of the normal quantile ``z``. (0, 1) when ``n`` is 0."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest

    level = 0.95 if z is None else 2 * NormalDist().cdf(z) - 1
    ci = binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def wilson_pct(correct: int, n: int) -> list[float] | None:
    """:func:`wilson` in percent as ``[low, high]``; None for n = 0 (no measurement, no interval)."""
    if n == 0:
        return None
    lo, hi = wilson(correct, n)
    return [100.0 * lo, 100.0 * hi]


def _ac_var(k: int, n: int) -> float:
    p = (k + 2) / (n + 4)
    return p * (1 - p) / (n + 4)


def combined_pct(terms: Sequence[tuple[float, int, int]], lo: float = 0.0, hi: float = 100.0) -> list[float] | None:
    """95% interval (percent) of ``sum(w * k / n)`` over independent proportions given as ``(w, k, n)``.

    Used for Sync (w = 1/3 per class) and Avg Gap (w = ±1/3 per accuracy). None when any n is 0.
    """
    if not terms or any(n == 0 for _, _, n in terms):
        return None
    value = sum(w * k / n for w, k, n in terms)
    half = Z95 * math.sqrt(sum(w * w * _ac_var(k, n) for w, k, n in terms))
    return [max(lo, 100.0 * (value - half)), min(hi, 100.0 * (value + half))]


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test of paired outcomes (same items, two models).

    Returns:
        ``{"n": paired items, "a_only": right under a only, "b_only": right under b only, "p": p-value}``;
        ``p`` is 1.0 when there is no discordant pair.
    """
    if len(a) != len(b):
        raise ValueError(f"mcnemar needs paired outcomes: {len(a)} vs {len(b)}")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    m, k = a_only + b_only, min(a_only, b_only)
    p = 1.0 if m == 0 else min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m)
    return {"n": len(a), "a_only": a_only, "b_only": b_only, "p": p}
