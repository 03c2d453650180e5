"""Putting metrics on one scale and combining them into one reward.

Each metric is standardised, ``z = (score - mean) / std``, with reference statistics of
typical SD outputs (override them in ``scorers.normalization``); the reward is the
weighted mean of the z-scores, ``Σ w_m z_m / Σ |w_m|``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tools.scorers.errors import ScorerError

# (mean, std) of each metric over SD-family images; rough, documented in docs/SCORERS.md
DEFAULT_STATS: dict[str, tuple[float, float]] = {
    "clip_score": (28.0, 4.0),
    "aesthetic": (5.5, 0.8),
    "image_reward": (0.0, 1.0),
    "hps_v21": (0.27, 0.03),
    "pick_score": (21.0, 1.5),
    "world_judge": (0.5, 0.25),  # a probability: the small world's judge
}


def normalize(
    scores: Mapping[str, torch.Tensor],
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, torch.Tensor]:
    """Standardised scores; a metric with no statistics raises."""
    table = {**DEFAULT_STATS, **(stats or {})}
    out = {}
    for name, value in scores.items():
        if name not in table:
            raise ScorerError(
                f"no normalisation statistics for metric {name!r}: set "
                f"scorers.normalization.{name} = [mean, std]"
            )
        mean, std = table[name]
        if std <= 0:
            raise ScorerError(f"normalisation std of {name!r} must be positive, got {std}")
        out[name] = (value.float() - mean) / std
    return out


def combine(
    scores: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    stats: Mapping[str, tuple[float, float]] | None = None,
) -> torch.Tensor:
    """One reward per image: the weighted mean of the standardised metrics."""
    used = {name: w for name, w in weights.items() if w != 0}
    if not used:
        raise ScorerError("reward weights are all zero: give at least one metric a weight")
    missing = sorted(set(used) - set(scores))
    if missing:
        raise ScorerError(
            f"reward weights name metrics {missing} that were not scored "
            f"(scored: {sorted(scores)}): add them to scorers.metrics or drop their weights"
        )
    z = normalize({name: scores[name] for name in used}, stats)
    total = sum(abs(w) for w in used.values())
    return sum(w * z[name] for name, w in used.items()) / total
