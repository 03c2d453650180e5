"""The scorer interface: ``score(images, prompts) -> {metric: tensor}``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from tools.scorers.preprocess import Preprocess, clip_preprocess


class Scorer(ABC):
    """Scores images against the prompts they were made from (one value per image).

    ``images``: float ``[N, 3, H, W]`` in [0, 1]; ``prompts``: N strings. Returns one
    ``[N]`` float tensor (on the CPU) per metric the scorer computes.
    """

    metrics: tuple[str, ...] = ()
    demo: bool = False  # True when the weights are tiny random ones

    @abstractmethod
    def _score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Scores of one already-checked batch."""

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        if len(prompts) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(prompts)} prompts")
        with torch.inference_mode():
            scores = self._score(images, list(prompts))
        return {name: value.float().cpu() for name, value in scores.items()}


class ClipEmbedder:
    """Unit-norm image and text embeddings of a ``transformers.CLIPModel``.

    ``preprocess`` is the image transform of the scorer's reference (torchvision's CLIP
    transform by default); :meth:`images` takes another one per call.
    """

    def __init__(
        self, model, tokenizer, device: str = "cpu", preprocess: Preprocess = clip_preprocess
    ) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.preprocess = preprocess
        self.image_size = int(model.config.vision_config.image_size)
        self.max_length = int(model.config.text_config.max_position_embeddings)

    def images(self, images: torch.Tensor, preprocess: Preprocess | None = None) -> torch.Tensor:
        pixels = (preprocess or self.preprocess)(images.to(self.device), self.image_size)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return F.normalize(self.model.visual_projection(pooled).float(), dim=-1)

    def texts(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        pooled = self.model.text_model(
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
        ).pooler_output
        return F.normalize(self.model.text_projection(pooled).float(), dim=-1)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())
