"""A synthetic LoRA set with known semantics (DEMO DATA), for tests and the benchmark.

Each concept owns a fixed low-rank direction per layer ("its training data"); every LoRA
of a concept is that direction at a random strength plus its own noise, factored at a
random rank with a random rotation of the factors, on a random subset of the layers.
LoRAs of one concept are thus "made from the same data" while sharing no factor tensor,
rank or layer set. Captions are real text, so the frozen text encoder can align them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from graph.records import BaseFamily
from tools.tiny.sd15 import DEMO_METADATA
from tools.weights.adapter import Adapter, AdapterModule

CONCEPTS: dict[str, tuple[str, ...]] = {
    "watercolor": (
        "a watercolor painting with soft washes on paper",
        "loose watercolor brush strokes in a pastel palette",
        "a landscape painted in traditional watercolor",
    ),
    "red-hair": (
        "a portrait of a woman with long red hair",
        "vivid ginger and copper hair",
        "a redhead with flowing curly hair",
    ),
    "cyberpunk": (
        "a neon-lit cyberpunk city street at night",
        "a futuristic city with holograms and rain",
        "glowing neon signs in a cyberpunk alley",
    ),
    "cat": (
        "a fluffy kitten with detailed fur",
        "a cute cat sitting on a windowsill",
        "close-up of a tabby cat's face",
    ),
    "armor": (
        "ornate medieval plate armor",
        "a knight in engraved steel armor",
        "fantasy knight armour with a helmet",
    ),
    "flamingo": (
        "pink flamingos standing in a tropical lagoon",
        "a flamingo with bright pink feathers",
        "a flock of flamingo birds at sunset",
    ),
}


@dataclass(frozen=True)
class SyntheticLora:
    id: str
    concept: str
    adapter: Adapter
    captions: tuple[str, ...]


def synthetic_loras(
    shapes: Mapping[str, tuple[int, int]],
    per_concept: int,
    seed: int = 0,
    *,
    concepts: Mapping[str, Sequence[str]] = CONCEPTS,
    core_rank: int = 2,
    ranks: Sequence[int] = (4, 8),
    keep: float = 0.8,
    noise: float = 0.3,
) -> list[SyntheticLora]:
    """``per_concept`` LoRAs per concept for linear layers ``shapes`` (name → [out, in]).

    The concept directions depend only on the concept's position in ``concepts``; the
    LoRAs themselves on ``seed`` (another seed: new LoRAs of the same concepts).
    """
    if min(ranks) <= core_rank:
        raise ValueError(f"every rank of {list(ranks)} must exceed core_rank {core_rank}")
    names = sorted(shapes)
    out = []
    for c, (concept, captions) in enumerate(concepts.items()):
        core = _core(names, shapes, c, core_rank)
        for j in range(per_concept):
            g = torch.Generator().manual_seed(seed * 1_000_003 + c * 1009 + j)
            modules = {}
            chosen = [n for n in names if torch.rand((), generator=g) < keep] or names[:1]
            strength = 0.5 + 1.5 * float(torch.rand((), generator=g))
            rank = ranks[int(torch.randint(len(ranks), (), generator=g))]
            for name in chosen:
                up_c, down_c = core[name]
                modules[name] = _lora_module(up_c * strength, down_c, rank, noise, g)
            lora_id = f"synthetic-{concept}-{seed}-{j}"
            adapter = Adapter(
                format="kohya-lora",
                family=BaseFamily.SD15,
                modules=modules,
                metadata=dict(DEMO_METADATA),
                source=lora_id,
            )
            out.append(SyntheticLora(lora_id, concept, adapter, tuple(captions)))
    return out


def _core(names, shapes, concept: int, rank: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7919 * (concept + 1))
    core = {}
    for name in names:
        out_dim, in_dim = shapes[name]
        up = torch.randn(out_dim, rank, generator=g) / rank**0.5
        down = torch.randn(rank, in_dim, generator=g) / in_dim**0.5
        core[name] = (up, down)
    return core


def _lora_module(up_c, down_c, rank: int, noise: float, g: torch.Generator) -> AdapterModule:
    extra = rank - up_c.shape[1]
    out_dim, in_dim = up_c.shape[0], down_c.shape[1]
    up = torch.cat([up_c, noise * torch.randn(out_dim, extra, generator=g) / extra**0.5], 1)
    down = torch.cat([down_c, torch.randn(extra, in_dim, generator=g) / in_dim**0.5], 0)
    rotation, _ = torch.linalg.qr(torch.randn(rank, rank, generator=g))
    alpha = float(rank) if torch.rand((), generator=g) < 0.5 else rank / 2
    scale = alpha / rank
    factors = {"up": (up @ rotation) / scale, "down": rotation.T @ down}
    return AdapterModule(kind="lora", factors=factors, alpha=alpha)
