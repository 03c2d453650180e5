"""Contrastive training of the weight encoder against the frozen text encoder.

Pairs are (LoRA, caption); captions come from an expert's example-image prompts and its
registered description. Each step draws a batch of LoRAs, one caption each, and
minimises the symmetric InfoNCE loss between the LoRA embeddings and the frozen text
embeddings (pairs with the same caption count as positives of each other).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from tools.autolora.config import EncoderConfig, EncoderTrainConfig
from tools.autolora.encoder import WeightEncoder, vocabulary
from tools.autolora.errors import TrainingDataError
from tools.autolora.tokens import LoraLayers

logger = logging.getLogger(__name__)

MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class EncoderExample:
    """One LoRA with its captions (example prompts, description)."""

    id: str
    lora: LoraLayers
    captions: tuple[str, ...]


@dataclass
class EncoderTrainResult:
    encoder: WeightEncoder
    losses: list[float] = field(default_factory=list)
    top1: float = 0.0  # caption → LoRA retrieval accuracy on the training pairs


def info_nce(
    lora_embeddings: Tensor,
    text_embeddings: Tensor,
    logit_scale: Tensor,
    caption_ids: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE of matching rows (unit vectors on both sides).

    ``caption_ids`` (one per row) marks rows sharing a caption as positives of each
    other; the targets are then spread evenly over a row's positives.
    """
    scale = logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * lora_embeddings @ text_embeddings.T
    if caption_ids is None:
        targets = torch.eye(len(logits), device=logits.device)
    else:
        targets = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = targets / targets.sum(1, keepdim=True)
    loss_lora = nn.functional.cross_entropy(logits, targets)
    loss_text = nn.functional.cross_entropy(logits.T, targets.T)
    return (loss_lora + loss_text) / 2


def build_encoder(examples: Sequence[EncoderExample], config: EncoderConfig) -> WeightEncoder:
    """A fresh encoder whose vocabulary (layer types, slots) covers ``examples``."""
    types, slots = vocabulary(e.lora for e in examples)
    return WeightEncoder(config.model_copy(update={"layer_types": types, "slots": slots}))


def train_encoder(
    examples: Sequence[EncoderExample],
    embed_texts: Callable[[list[str]], np.ndarray],
    config: EncoderConfig,
    train: EncoderTrainConfig,
    encoder: WeightEncoder | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> EncoderTrainResult:
    """Train (or continue training) an encoder on ``examples``.

    ``embed_texts`` is the frozen text encoder (e.g. ``Embedder.embed``); its width must
    be ``config.embed_dim``.
    """
    usable = [e for e in examples if e.captions]
    if len(usable) < 2:
        raise TrainingDataError(
            f"contrastive training needs at least 2 LoRAs with captions, got {len(usable)} "
            f"(of {len(examples)}). Fix: register LoRAs with weight files and a description "
            "or example prompts (`diffgraph crawl`), or try `--synthetic` for a demo"
        )
    torch.manual_seed(train.seed)
    rng = random.Random(train.seed)
    captions = sorted({c for e in usable for c in e.captions})
    caption_row = {c: i for i, c in enumerate(captions)}
    text = torch.as_tensor(np.asarray(embed_texts(captions)), dtype=torch.float32)
    if text.shape[1] != config.embed_dim:
        raise TrainingDataError(
            f"the text encoder gives {text.shape[1]}-d embeddings, the encoder config expects "
            f"{config.embed_dim}: set embed_dim to the text encoder's width"
        )
    encoder = encoder or build_encoder(usable, config)
    device = encoder.head.weight.device
    text = nn.functional.normalize(text, dim=-1).to(device)
    prepared = [encoder.prepare(e.lora) for e in usable]
    optimizer = torch.optim.AdamW(
        encoder.parameters(), lr=train.lr, weight_decay=train.weight_decay
    )
    batch = min(train.batch_size, len(usable))
    result = EncoderTrainResult(encoder)
    encoder.train()
    for step in range(train.steps):
        rows = rng.sample(range(len(usable)), batch)
        chosen = torch.tensor([caption_row[rng.choice(usable[r].captions)] for r in rows])
        loss = info_nce(
            encoder([prepared[r] for r in rows]),
            text[chosen.to(device)],
            encoder.logit_scale,
            chosen.to(device),
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.losses.append(loss.item())
        if on_step is not None:
            on_step(step, result.losses[-1])
    encoder.eval()
    result.top1 = retrieval_top1(encoder, usable, text.cpu(), caption_row)
    logger.info(
        "trained the AutoLoRA encoder for %d steps: loss %.4f -> %.4f, caption top-1 %.2f",
        train.steps,
        result.losses[0],
        result.losses[-1],
        result.top1,
    )
    return result


def retrieval_top1(
    encoder: WeightEncoder,
    examples: Sequence[EncoderExample],
    text: Tensor,
    caption_row: dict[str, int],
) -> float:
    """Share of the training captions whose nearest LoRA is one that has the caption."""
    vectors = encoder.embed([e.lora for e in examples])
    hits = total = 0
    for caption, row in caption_row.items():
        owners = {i for i, e in enumerate(examples) if caption in e.captions}
        best = int(torch.argmax(vectors @ text[row]))
        hits += best in owners
        total += 1
    return hits / total if total else 0.0
