"""Summaries of a metric over seeds: mean, standard deviation, Student-t and Welch 95% intervals.

Pure functions of plain numbers (float64). Student-t quantiles come from ``scipy.stats`` (scipy is
a dependency of jax, and of this project).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


def t_quantile(probability: float, df: float) -> float:
    """The ``probability`` quantile of Student's t with ``df`` (> 0, not necessarily whole)
    degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    from scipy import stats  # slow to import: only when an interval is computed

    return float(stats.t.ppf(probability, df))


@dataclass(frozen=True)
class Summary:
    """A metric over ``n`` seeds: ``mean``, ``std`` (ddof=1) and the two-sided ``CONFIDENCE``
    Student-t interval of the mean ``[low, high]``; ``std``/``low``/``high`` are None for n < 2."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, sample standard deviation and ``mean ± t_{(1+c)/2, n-1} · std / √n``."""
    values = [float(value) for value in values]
    n = len(values)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = math.fsum(values) / n
    if n < 2:
        return Summary(n, mean, None, None, None)
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` and its Welch interval ``[low, high]`` with ``df`` degrees of freedom
    (Welch–Satterthwaite); interval and df are None when either side has fewer than 2 values, and
    df is None (a zero-width interval) when both sides have no spread."""

    difference: float
    low: float | None
    high: float | None
    df: float | None


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """The difference of the means of ``a`` and ``b`` with its two-sided Welch t interval."""
    first, second = summarize(a, confidence), summarize(b, confidence)
    difference = first.mean - second.mean
    if first.std is None or second.std is None:
        return Difference(difference, None, None, None)
    va, vb = first.std**2 / first.n, second.std**2 / second.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(difference, difference, difference, None)
    df = (va + vb) ** 2 / (va**2 / (first.n - 1) + vb**2 / (second.n - 1))
    half = t_quantile((1 + confidence) / 2, df) * se
    return Difference(difference, difference - half, difference + half, df)
