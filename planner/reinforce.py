"""REINFORCE (paper Eq. 4): ∇J ≈ 1/N Σ_n (u_n − b) ∇ log P(w_n), as a loss to minimise.

Two baselines b:

- ``leave_one_out`` (default): each prompt's coefficients are sampled K times per step and
  each sample is judged against the mean reward of the prompt's other K − 1 samples. In-the
  -wild prompts differ far more in how well *any* merge does on them than coefficient
  samples differ on one prompt; this b removes the prompt's difficulty from the advantage
  and stays unbiased (it does not depend on the sample it judges).
- ``running_mean``: one running mean of all rewards, ``b ← m·b + (1 − m)·mean(u)`` after
  each step (the paper's choice; on the synthetic world it learns little, see
  BENCHMARKS.md).
"""

from __future__ import annotations

import torch


def reinforce_loss(
    log_prob: torch.Tensor, rewards: torch.Tensor, baseline: torch.Tensor | float
) -> torch.Tensor:
    """``-mean((u - b) · log P(w))``; the advantage carries no gradient."""
    advantage = (rewards - baseline).detach()
    return -(advantage * log_prob).mean()


def leave_one_out(rewards: torch.Tensor) -> torch.Tensor:
    """For ``(K, prompts)`` rewards, the mean of the other K − 1 samples of each prompt."""
    k = rewards.shape[0]
    if k < 2:
        raise ValueError("the leave-one-out baseline needs at least 2 samples per prompt")
    return (rewards.sum(0, keepdim=True) - rewards) / (k - 1)


class RunningMean:
    """``b ← m·b + (1 − m)·mean(u)``; the first step uses its own mean."""

    def __init__(self, momentum: float = 0.9, value: float | None = None) -> None:
        self.momentum = momentum
        self.value = value

    def current(self, rewards: torch.Tensor) -> float:
        return float(rewards.mean()) if self.value is None else self.value

    def update(self, rewards: torch.Tensor) -> None:
        mean = float(rewards.mean())
        if self.value is None:
            self.value = mean
        else:
            self.value = self.momentum * self.value + (1.0 - self.momentum) * mean
