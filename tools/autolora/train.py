"""Training the AutoLoRA models on the universal graph's LoRAs (one function per command).

``train_encoder_on_graph``: the weight encoder, contrastively, on every active LoRA of
the family with weights and captions. ``train_fusion_on_graph``: the fusion gates on a
loaded SD 1.5 base model, with each LoRA's image-caption pairs read from a folder or
generated with the LoRA merged. Both write a checkpoint that stores its config and a
record of the training, and return a report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tools.autolora.config import (
    EncoderConfig,
    EncoderTrainConfig,
    FusionTrainConfig,
    TrainingRecord,
)
from tools.autolora.data import GraphLora, graph_loras
from tools.autolora.errors import TrainingDataError
from tools.tiny.sd15 import DEMO_KEY

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, float], None]


class TrainReport(BaseModel):
    """What a training command did; ``demo`` when any of its material is demo data."""

    kind: Literal["encoder", "fusion"]
    checkpoint: str
    steps: int
    first_loss: float
    last_loss: float
    loras: list[str]
    skipped: dict[str, str] = Field(default_factory=dict)
    caption_top1: float | None = Field(None, description="encoder: caption → LoRA accuracy")
    data: str
    demo: bool
    notes: list[str] = Field(default_factory=list)


def _is_demo(lora: GraphLora) -> bool:
    return lora.expert.demo or DEMO_KEY in lora.adapter.metadata


def train_encoder_on_graph(
    settings,
    graph,
    *,
    steps: int | None = None,
    out: Path | None = None,
    on_step: StepCallback | None = None,
) -> TrainReport:
    """Train the weight encoder on the graph's LoRAs of ``settings.selection.family``."""
    from tools.autolora.checkpoint import save_encoder
    from tools.autolora.contrastive import EncoderExample, train_encoder
    from tools.autolora.paths import encoder_path
    from tools.autolora.tokens import lora_layers

    a = settings.autolora
    family = settings.selection.family
    loras, skipped = graph_loras(graph, family, settings.allow_pickle)
    examples = [EncoderExample(g.expert.id, lora_layers(g.adapter), g.captions) for g in loras]
    config = EncoderConfig(
        d_model=a.d_model,
        layers=a.layers,
        heads=a.heads,
        embed_dim=graph.embedder.dim,
        text_model=graph.embedder.name,
    )
    train = EncoderTrainConfig(
        steps=steps or a.encoder_steps, batch_size=a.encoder_batch, lr=a.encoder_lr, seed=a.seed
    )
    result = train_encoder(examples, graph.embedder.embed, config, train, on_step=on_step)
    trained = [e.id for e in examples if e.captions]
    demo = any(_is_demo(g) for g in loras)
    data = f"{len(trained)} {family.value} LoRAs of the graph: example prompts and descriptions"
    record = TrainingRecord(
        steps=train.steps,
        loras=trained,
        data=data,
        demo=demo,
        first_loss=result.losses[0],
        last_loss=result.losses[-1],
        settings=train.model_dump(),
        caption_top1=result.top1,
    )
    path = save_encoder(out or encoder_path(settings), result.encoder, record)
    notes = ["DEMO: the LoRAs are tiny random demo weights; the encoder means nothing"] * demo
    return TrainReport(
        kind="encoder",
        checkpoint=str(path),
        steps=train.steps,
        first_loss=result.losses[0],
        last_loss=result.losses[-1],
        loras=trained,
        skipped=skipped,
        caption_top1=result.top1,
        data=data,
        demo=demo,
        notes=notes,
    )


def train_fusion_on_graph(
    settings,
    graph,
    generator,
    *,
    steps: int | None = None,
    pairs_dir: Path | None = None,
    out: Path | None = None,
    on_step: StepCallback | None = None,
) -> TrainReport:
    """Train the fusion gates on ``generator``'s (SD 1.5) pipeline with the graph's LoRAs.

    Pairs come from ``pairs_dir/<expert id>/`` (images with ``.txt`` captions) or, without
    it, are generated with each LoRA merged from its captions (self-generated data).
    """
    from tools.autolora.checkpoint import save_gates
    from tools.autolora.fusion_training import (
        FusionLora,
        FusionTrainer,
        check_trainable,
        folder_pairs,
        gate_config,
        generated_pairs,
    )
    from tools.autolora.gates import GateBank
    from tools.autolora.paths import fusion_path
    from tools.generation.request import GenerationRequest

    a = settings.autolora
    check_trainable(generator.pipe)
    loras, skipped = graph_loras(graph, generator.family, settings.allow_pickle)
    side = a.pairs_size or native_side(generator.pipe)
    request = GenerationRequest(
        prompts=["-"],
        negative_prompt=settings.generation.negative_prompt,
        steps=settings.generation.steps,
        guidance=settings.generation.guidance,
        width=side,
        height=side,
        seed=a.seed,
    )
    fusion_loras = []
    for lora in loras:
        expert = lora.expert
        if pairs_dir is not None:
            folder = Path(pairs_dir) / expert.id
            if not folder.is_dir():
                skipped[expert.id] = f"no pairs folder {folder}"
                continue
            pairs = folder_pairs(folder, side)
        else:
            captions = list(islice(cycle(lora.captions or (expert.name,)), a.pairs_per_lora))
            logger.info("generating %d training pairs for %s", len(captions), expert.id)
            pairs = generated_pairs(generator, lora.path, captions, request, expert.trigger_words)
        fusion_loras.append(FusionLora(expert.id, lora.adapter, pairs))
    if len(fusion_loras) < 2:
        raise TrainingDataError(
            f"fusion training needs at least 2 {generator.family.value} LoRAs with weights and "
            f"pairs, got {len(fusion_loras)} ({len(skipped)} left out: "
            f"{'; '.join(f'{k}: {v}' for k, v in list(skipped.items())[:3]) or 'none'})"
        )
    adapters = [f.adapter for f in fusion_loras]
    gates = GateBank(gate_config(generator.pipe, adapters, a.global_rank, generator.family))
    train = FusionTrainConfig(
        steps=steps or a.fusion_steps, batch_size=a.fusion_batch, lr=a.fusion_lr, seed=a.seed
    )
    losses = FusionTrainer(generator.pipe, fusion_loras, gates, train).train(on_step)
    demo = generator.demo or any(f.pairs.demo for f in fusion_loras) or any(map(_is_demo, loras))
    data = (
        f"folders under {pairs_dir}"
        if pairs_dir is not None
        else f"{a.pairs_per_lora} pairs per LoRA generated with the LoRA merged (self-generated)"
    )
    trained = [f.id for f in fusion_loras]
    record = TrainingRecord(
        steps=train.steps,
        loras=trained,
        data=data,
        demo=demo,
        first_loss=losses[0],
        last_loss=losses[-1],
        settings=train.model_dump(),
        base_model=generator.loaded.source,
        pairs_side=side,
    )
    path = save_gates(out or fusion_path(settings), gates, record)
    notes = []
    if demo:
        notes.append("DEMO: tiny random weights and self-generated pairs; the gates mean nothing")
    if pairs_dir is None:
        notes.append("pairs were generated with each LoRA merged, not the LoRA's training images")
    return TrainReport(
        kind="fusion",
        checkpoint=str(path),
        steps=train.steps,
        first_loss=losses[0],
        last_loss=losses[-1],
        loras=trained,
        skipped=skipped,
        data=data,
        demo=demo,
        notes=notes,
    )


def native_side(pipe) -> int:
    """The image side a pipeline makes by default (UNet sample size × VAE stride)."""
    return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
