"""The contract between the REINFORCE trainer and a reward environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from graph.subgraph import Subgraph


@dataclass(frozen=True)
class TrainPrompt:
    """A training or evaluation prompt and its MiniLM embedding."""

    text: str
    x: torch.Tensor


Selector = Callable[[TrainPrompt], list[str]]


def fixed_selector(expert_ids: Sequence[str]) -> Selector:
    """The paper's "Ours fixed": every prompt plans over the same experts."""
    ids = list(expert_ids)
    return lambda prompt: ids


class RewardEnv(Protocol):
    """Selects experts for a prompt, serves their subgraph and rewards sampled coefficients."""

    name: str
    synthetic: bool  # the reward is the synthetic world's
    demo: bool  # the reward means nothing for real images (synthetic or tiny weights)

    @property
    def expert_ids(self) -> list[str]:
        """Every expert the environment can select (fits the metric scales)."""

    def candidates(self, prompt: TrainPrompt) -> list[str]: ...

    def subgraph(self, expert_ids: Sequence[str]) -> Subgraph: ...

    def rewards(
        self,
        prompts: Sequence[TrainPrompt],
        subgraphs: Sequence[Subgraph],
        coefficients: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Rewards u of ``(K, experts)`` coefficient samples per prompt, shape ``(K, prompts)``.

        Each sample is one merge: the real environment generates and scores an image for
        every one of them.
        """
