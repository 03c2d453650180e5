"""Scoring planners on the synthetic world against equal weights and the known optimum."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from planner.envs.base import TrainPrompt
from planner.envs.synthetic import SyntheticEnv
from planner.planners import Planner, PlanRequest


@dataclass(frozen=True)
class SyntheticScore:
    """Mean rewards over prompts; ``gain`` is the share of the gap from equal weights to the
    optimum that the planner closes (0: as good as equal weights, 1: optimal)."""

    planner: str
    reward: float
    equal: float
    optimum: float

    @property
    def gain(self) -> float:
        return (self.reward - self.equal) / (self.optimum - self.equal)


def evaluate(
    planner: Planner,
    env: SyntheticEnv,
    prompts: Sequence[TrainPrompt],
    candidates: Callable[[TrainPrompt], list[str]] | None = None,
) -> SyntheticScore:
    """The planner's synthetic reward on ``prompts`` (experts: ``candidates`` or the env's)."""
    rewards, equal, optimum = [], [], []
    for prompt in prompts:
        subgraph = env.subgraph((candidates or env.candidates)(prompt))
        plan = planner.plan(PlanRequest(prompt.text, prompt.x, subgraph))
        flat = torch.full((subgraph.num_experts,), 0.5)
        pair = env.rewards([prompt, prompt], [subgraph, subgraph], [plan.coefficients, flat])
        rewards.append(float(pair[0]))
        equal.append(float(pair[1]))
        optimum.append(env.optimum(prompt, subgraph)[1])
    n = len(prompts)
    return SyntheticScore(planner.name, sum(rewards) / n, sum(equal) / n, sum(optimum) / n)
