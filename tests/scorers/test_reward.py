"""Normalisation and combination of metrics into one reward (exact arithmetic)."""

from __future__ import annotations

import pytest
import torch

from tools.scorers.errors import ScorerError
from tools.scorers.reward import combine, normalize


def test_combination_is_the_weighted_mean_of_z_scores():
    scores = {
        "clip_score": torch.tensor([28.0, 32.0]),
        "aesthetic": torch.tensor([5.5, 7.1]),
        "pick_score": torch.tensor([0.0, 0.0]),
    }
    reward = combine(scores, {"clip_score": 1.0, "aesthetic": 3.0, "pick_score": 0.0})
    torch.testing.assert_close(reward, torch.tensor([0.0, 1.75]))


def test_statistics_can_be_overridden_and_weights_negative():
    scores = {"image_reward": torch.tensor([1.0, 3.0]), "hps_v21": torch.tensor([0.30, 0.24])}
    z = normalize(scores, {"image_reward": (1.0, 2.0)})
    torch.testing.assert_close(z["image_reward"], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(z["hps_v21"], torch.tensor([1.0, -1.0]))
    reward = combine(scores, {"image_reward": 1.0, "hps_v21": -1.0}, {"image_reward": (1.0, 2.0)})
    torch.testing.assert_close(reward, torch.tensor([-0.5, 1.0]))


def test_bad_combinations_are_explained():
    scores = {"clip_score": torch.tensor([1.0])}
    with pytest.raises(ScorerError, match=r"\['aesthetic'\] that were not scored"):
        combine(scores, {"aesthetic": 1.0})
    with pytest.raises(ScorerError, match="all zero"):
        combine(scores, {"clip_score": 0.0})
    with pytest.raises(ScorerError, match=r"normalization\.fid"):
        normalize({"fid": torch.tensor([1.0])})
    with pytest.raises(ScorerError, match="positive"):
        normalize(scores, {"clip_score": (0.0, 0.0)})
