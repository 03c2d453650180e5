"""Statistics of benchmark tables: bootstrap intervals of a mean and paired win rates.

Pure functions of their inputs (the bootstrap draws from ``numpy.random.default_rng(seed)``),
so a table is reproducible to the last digit.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean and its percentile bootstrap interval over ``n`` units."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_mean(
    values: Sequence[float], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> Interval:
    """The mean of ``values`` with a percentile bootstrap interval at ``level``.

    ``values`` are the independent units (one per prompt: average a prompt's seeds first,
    they share its wording). Resamples draw ``len(values)`` units with replacement; the
    interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of their means
    (numpy's linear interpolation).
    """
    if not values:
        raise ValueError("bootstrap_mean needs at least one value")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must be in (0, 1) and resamples ≥ 1, got {level}, {resamples}")
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Interval(statistics.fmean(values), float(low), float(high), len(values))


@dataclass(frozen=True)
class WinRate:
    """Paired comparisons of ours against a baseline on the same units."""

    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float | None:
        """Wins plus half the ties, over every pair (None when there are none)."""
        return (self.wins + self.ties / 2) / self.n if self.n else None

    def format(self) -> str:
        if self.rate is None:
            return "n/a"
        return f"{self.rate:.0%} ({self.wins}/{self.ties}/{self.losses})"


def win_rate(ours: Sequence[float], theirs: Sequence[float], tie: float = 0.0) -> WinRate:
    """Count pairs where ``ours`` is higher, within ``tie`` of, or lower than ``theirs``."""
    if len(ours) != len(theirs):
        raise ValueError(f"paired values differ in length: {len(ours)} and {len(theirs)}")
    wins = ties = losses = 0
    for a, b in zip(ours, theirs, strict=True):
        if abs(a - b) <= tie:
            ties += 1
        elif a > b:
            wins += 1
        else:
            losses += 1
    return WinRate(wins, ties, losses)


def recall_precision(chosen: Sequence[str], gold: Sequence[str]) -> tuple[float, float]:
    """Selection recall and precision against a gold set (an empty set is fully recalled;
    choosing nothing is fully precise)."""
    picked, wanted = set(chosen), set(gold)
    hits = len(picked & wanted)
    recall = hits / len(wanted) if wanted else 1.0
    precision = hits / len(picked) if picked else 1.0
    return recall, precision
