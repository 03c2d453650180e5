"""Scorers that are a CLIP model plus a formula: CLIPScore, PickScore, HPS v2.1, aesthetic.

- ``clip_score``: ``100 · max(cos(image, text), 0)`` with CLIP ViT-L/14 (torchmetrics'
  convention; Hessel et al. 2021).
- ``pick_score``: ``logit_scale · cos`` with PickScore_v1 (a fine-tuned CLIP ViT-H/14).
- ``hps_v21``: ``cos`` with HPS v2.1 (a fine-tuned OpenCLIP ViT-H/14).
- ``aesthetic``: the LAION improved aesthetic predictor, an MLP over the unit-norm CLIP
  ViT-L/14 image embedding (about 1–10).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tools.scorers.base import ClipEmbedder, Scorer
from tools.scorers.preprocess import Preprocess


class CosineScorer(Scorer):
    """``scale · cos(image, text)`` (optionally floored at 0) under one metric name."""

    def __init__(
        self,
        metric: str,
        embedder: ClipEmbedder,
        scale: float = 1.0,
        floor: float | None = None,
        demo: bool = False,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.metrics = (metric,)
        self.embedder = embedder
        self.scale = scale
        self.floor = floor
        self.demo = demo
        self.preprocess = preprocess  # None: the embedder's

    def _score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        image_embeds = self.embedder.images(images, self.preprocess)
        cosine = (image_embeds * self.embedder.texts(prompts)).sum(-1)
        if self.floor is not None:
            cosine = cosine.clamp(min=self.floor)
        return {self.metrics[0]: self.scale * cosine}


def score_head(dim: int = 768) -> torch.nn.Sequential:
    """The MLP head of the LAION aesthetic predictor and of ImageReward (``layers.0/2/4/6/7``).

    No activations, as published; the dropouts are no-ops at inference.
    """
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(dim, 1024),
        nn.Dropout(0.2),
        nn.Linear(1024, 128),
        nn.Dropout(0.2),
        nn.Linear(128, 64),
        nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )


class AestheticScorer(Scorer):
    """LAION aesthetic score of the image alone (the prompt is ignored)."""

    metrics = ("aesthetic",)

    def __init__(self, embedder: ClipEmbedder, head: torch.nn.Module, demo: bool = False) -> None:
        self.embedder = embedder
        self.head = head.eval().to(embedder.device)
        self.demo = demo

    def _score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"aesthetic": self.head(self.embedder.images(images)).squeeze(-1)}
