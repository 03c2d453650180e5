"""Scenes of the small world and their rendering: one coloured shape on a background, styled.

A :class:`Scene` is drawn from a seed; :func:`render` turns it into a 32×32 RGB ``uint8``
array: composed at 64×64 (shapes drawn at 4× and box-filtered down, backgrounds and styles as
real image transforms, :mod:`tools.world.styles`), then box-filtered to 32×32 — the size the
world's models are trained at on 2 CPU cores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tools.world import styles
from tools.world.vocab import BACKGROUNDS, COLOURS, RGB, SHAPES, SIZES, STYLES

SIZE = 64  # composing size
IMAGE_SIZE = 32  # the world's image size
_SUPER = 4
_DIAMETER = {"small": 0.30, "medium": 0.42, "large": 0.56}
_CENTRE_X = {"left": 0.31, "center": 0.5, "right": 0.69}


@dataclass(frozen=True)
class Scene:
    """What one image shows; ``seed`` fixes the jitter (exact place, tone, pattern phase)."""

    shape: str
    colour: str
    background: str = "plain"
    style: str = "none"
    size: str = "medium"
    position: str = "center"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, table in (
            ("shape", self.shape, SHAPES),
            ("colour", self.colour, COLOURS),
            ("background", self.background, BACKGROUNDS),
            ("style", self.style, STYLES),
            ("size", self.size, SIZES),
        ):
            if value not in table:
                raise ValueError(f"unknown {name} {value!r}: expected one of {sorted(table)}")
        if self.position not in _CENTRE_X:
            raise ValueError(f"unknown position {self.position!r}: expected {sorted(_CENTRE_X)}")


def sample_scene(
    rng: np.random.Generator,
    backgrounds: Sequence[str] = ("plain",),
    styles_: Sequence[str] = ("none",),
    shapes: Sequence[str] = tuple(SHAPES),
    colours: Sequence[str] = tuple(COLOURS),
) -> Scene:
    """A random scene over the given attribute values (uniform), seeded by ``rng``."""
    return Scene(
        shape=str(rng.choice(shapes)),
        colour=str(rng.choice(colours)),
        background=str(rng.choice(backgrounds)),
        style=str(rng.choice(styles_)),
        size=str(rng.choice(tuple(SIZES))),
        position=str(rng.choice(tuple(_CENTRE_X))),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple]:
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * 0.82, y * 0.82) for x, y in pts]
    elif shape == "diamond":
        pts = [(0, -1.1), (0.8, 0), (0, 1.1), (-0.8, 0)]
    elif shape == "triangle":
        pts = [(0, -1.05), (1.0, 0.8), (-1.0, 0.8)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.08 if k % 2 == 0 else 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "cross":
        w = 0.34
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
               (-w, w), (-1, w), (-1, -w), (-w, -w)]  # fmt: skip
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def shape_mask(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The object's coverage in [0, 1], ``SIZE × SIZE`` float32 (anti-aliased)."""
    big = SIZE * _SUPER
    r = 0.5 * _DIAMETER[scene.size] * big * rng.uniform(0.93, 1.07)
    cx = (_CENTRE_X[scene.position] + rng.uniform(-0.04, 0.04)) * big
    cy = (0.5 + rng.uniform(-0.08, 0.08)) * big
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    if scene.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        angle = math.radians(rng.uniform(-10, 10))
        draw.polygon(_polygon(scene.shape, cx, cy, r, angle), fill=255)
    small = canvas.resize((SIZE, SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render(scene: Scene) -> np.ndarray:
    """The scene as an ``IMAGE_SIZE × IMAGE_SIZE × 3`` ``uint8`` RGB image (deterministic)."""
    rng = np.random.default_rng(scene.seed)
    background = styles.background(scene.background, rng)
    mask = shape_mask(scene, rng)
    colour = np.clip(np.array(RGB[scene.colour]) + rng.integers(-12, 13, 3), 0, 255) / 255.0
    image = background * (1 - mask[..., None]) + colour.astype(np.float32) * mask[..., None]
    image = styles.apply_style(scene.style, image, background, mask, colour, rng)
    f = SIZE // IMAGE_SIZE
    image = np.clip(image, 0, 1).reshape(IMAGE_SIZE, f, IMAGE_SIZE, f, 3).mean((1, 3))
    return (image * 255 + 0.5).astype(np.uint8)


def render_batch(scenes: Sequence[Scene]) -> np.ndarray:
    """``N × IMAGE_SIZE × IMAGE_SIZE × 3`` ``uint8``."""
    empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return np.stack([render(s) for s in scenes]) if scenes else empty
