"""Several scorers behind the one interface, scoring in batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tools.scorers.base import Scorer


class ScorerSuite(Scorer):
    """Runs each scorer over batches of at most ``batch_size`` images."""

    def __init__(self, scorers: Sequence[Scorer], batch_size: int = 16) -> None:
        names = [m for s in scorers for m in s.metrics]
        if len(names) != len(set(names)):
            raise ValueError(f"two scorers compute the same metric: {names}")
        self.scorers = list(scorers)
        self.metrics = tuple(names)
        self.batch_size = batch_size
        self.demo = any(s.demo for s in scorers)

    def _score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        parts: dict[str, list[torch.Tensor]] = {m: [] for m in self.metrics}
        for start in range(0, len(prompts), self.batch_size):
            batch = images[start : start + self.batch_size]
            texts = prompts[start : start + self.batch_size]
            for scorer in self.scorers:
                for name, value in scorer.score(batch, texts).items():
                    parts[name].append(value)
        return {name: torch.cat(values) for name, values in parts.items()}
