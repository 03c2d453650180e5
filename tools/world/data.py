"""Training and evaluation sets of the small world: domains, rendered images, captions.

A :class:`Domain` names the attribute values its scenes draw from; the base model's domain
is plain backgrounds without style, each expert's domain adds its one style or background.
Sets are deterministic in their seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tools.world.captions import caption
from tools.world.scene import Scene, render, sample_scene
from tools.world.vocab import BACKGROUNDS, COLOURS, SHAPES, STYLES


@dataclass(frozen=True)
class Domain:
    """The attribute values a training set draws from (uniformly)."""

    backgrounds: tuple[str, ...] = ("plain",)
    styles: tuple[str, ...] = ("none",)
    shapes: tuple[str, ...] = tuple(SHAPES)
    colours: tuple[str, ...] = tuple(COLOURS)


BASE_DOMAIN = Domain()
# Every single-attribute domain: what the VAE and the judge see (never two expert
# attributes at once: compositional prompts stay held out).
SINGLE_DOMAINS = (
    BASE_DOMAIN,
    *(Domain(styles=(s,)) for s in STYLES if s != "none"),
    *(Domain(backgrounds=(b,)) for b in BACKGROUNDS if b != "plain"),
)


@dataclass
class WorldSet:
    """Rendered scenes: ``images`` ``N × 64 × 64 × 3`` uint8 and one caption each."""

    scenes: list[Scene]
    images: np.ndarray
    captions: list[str]


def make_set(domains: Sequence[Domain], n: int, seed: int) -> WorldSet:
    """``n`` scenes drawn round-robin from ``domains``, rendered and captioned."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        d = domains[i % len(domains)]
        scenes.append(sample_scene(rng, d.backgrounds, d.styles, d.shapes, d.colours))
    captions = [caption(s, rng) for s in scenes]
    images = np.stack([render(s) for s in scenes])
    return WorldSet(scenes, images, captions)


def to_tensor(images: np.ndarray):
    """uint8 ``N × H × W × 3`` → float ``N × 3 × H × W`` in [-1, 1] (the VAE's range)."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)
