"""Bootstrap intervals, paired win rates and selection recall: exact on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from evals.stats import Interval, WinRate, bootstrap_mean, recall_precision, win_rate


def test_a_constant_has_a_zero_width_interval():
    assert bootstrap_mean([0.25] * 7) == Interval(0.25, 0.25, 0.25, 7)
    assert bootstrap_mean([3.0]) == Interval(3.0, 3.0, 3.0, 1)


def test_the_interval_is_the_percentiles_of_the_resampled_means():
    values = [0.0, 1.0, 0.5, 0.25]
    got = bootstrap_mean(values, resamples=500, seed=7)
    rng = np.random.default_rng(7)
    means = np.asarray(values)[rng.integers(0, 4, size=(500, 4))].mean(axis=1)
    assert got == Interval(0.4375, *np.quantile(means, [0.025, 0.975]).tolist(), 4)
    assert got.low < got.mean < got.high
    assert bootstrap_mean(values, resamples=500, seed=7) == got
    assert bootstrap_mean(values, resamples=500, seed=8) != got


def test_two_units_resampled_give_the_exact_quantiles():
    """Values 0 and 1, 4000 resamples: means are 0, 0.5 or 1, so the 95 % interval is [0, 1]
    and the 50 % interval is [0.5, 0.5] (half the means are 0.5)."""
    assert bootstrap_mean([0.0, 1.0], resamples=4000) == Interval(0.5, 0.0, 1.0, 2)
    assert bootstrap_mean([0.0, 1.0], resamples=4000, level=0.5) == Interval(0.5, 0.5, 0.5, 2)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        bootstrap_mean([])
    with pytest.raises(ValueError):
        bootstrap_mean([1.0], level=1.0)
    with pytest.raises(ValueError):
        win_rate([1.0], [1.0, 2.0])


def test_win_rate_counts_pairs_and_halves_ties():
    got = win_rate([1.0, 0.5, 0.0, 0.75, 0.25], [0.5, 0.5, 0.25, 0.25, 1.0])
    assert got == WinRate(wins=2, ties=1, losses=2)
    assert got.n == 5 and got.rate == 0.5
    assert got.format() == "50% (2/1/2)"
    assert win_rate([0.30, 0.5], [0.31, 0.1], tie=0.02) == WinRate(1, 1, 0)
    assert win_rate([], []).rate is None


def test_recall_and_precision_against_gold():
    assert recall_precision(["a", "b", "c"], ["a", "d"]) == (0.5, 1 / 3)
    assert recall_precision([], []) == (1.0, 1.0)
    assert recall_precision(["a"], []) == (1.0, 0.0)
    assert recall_precision([], ["a"]) == (0.0, 1.0)
