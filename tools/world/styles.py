"""Backgrounds and visual styles of the small world, as image transforms on float RGB arrays.

Backgrounds are neutral-toned patterns (the object's colour stays the only strong hue);
styles transform the whole composed image and keep the object's colour recognisable
(noir keeps it as a selective-colour accent, the way Sin City does).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIZE = 64
_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _gray(tone: np.ndarray | float, rng: np.random.Generator) -> np.ndarray:
    tint = rng.uniform(-0.02, 0.02, 3).astype(np.float32)
    tone = np.broadcast_to(np.asarray(tone, dtype=np.float32), (SIZE, SIZE))
    return np.clip(tone[..., None] + tint, 0, 1)


def background(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A ``SIZE × SIZE × 3`` float32 background of ``kind``."""
    light, dark = rng.uniform(0.84, 0.93), rng.uniform(0.50, 0.62)
    phase = rng.uniform(0, 16)
    if kind == "plain":
        return _gray(light, rng)
    if kind == "stripes":
        period = rng.uniform(10, 14)
        axis = _X + _Y if rng.random() < 0.5 else _X - _Y + SIZE
        on = ((axis + phase) % period) < period / 2
        return _gray(np.where(on, light, dark), rng)
    if kind == "checker":
        cell = rng.uniform(10, 14)
        on = (np.floor((_X + phase) / cell) + np.floor((_Y + phase) / cell)) % 2 == 0
        return _gray(np.where(on, light, dark), rng)
    if kind == "dots":
        gap = rng.uniform(10, 13)
        dx = (_X + phase) % gap - gap / 2
        dy = (_Y + phase) % gap - gap / 2
        on = dx**2 + dy**2 < (gap * 0.28) ** 2
        return _gray(np.where(on, dark, light), rng)
    if kind == "gradient":
        t = _Y / (SIZE - 1) if rng.random() < 0.5 else 1 - _Y / (SIZE - 1)
        return _gray(light * (1 - t) + (dark - 0.15) * t, rng)
    if kind == "grid":
        gap = rng.uniform(10, 13)
        line = ((_X + phase) % gap < 1.6) | ((_Y + phase) % gap < 1.6)
        return _gray(np.where(line, dark - 0.1, light), rng)
    if kind == "waves":
        period = rng.uniform(12, 15)
        wave = np.sin(2 * np.pi * (_Y + 4 * np.sin(2 * np.pi * _X / 24) + phase) / period)
        return _gray(np.where(wave > 0, light, dark), rng)
    if kind == "night":
        sky = np.stack(
            [0.06 + 0.03 * _Y / SIZE, 0.07 + 0.03 * _Y / SIZE, 0.20 + 0.08 * _Y / SIZE], -1
        )
        stars = rng.random((SIZE, SIZE)) < 0.012
        return np.where(stars[..., None], 0.9, sky).astype(np.float32)
    raise ValueError(f"unknown background {kind!r}")


def _edge(mask: np.ndarray, width: int) -> np.ndarray:
    grown = ndimage.grey_dilation(mask, size=(width, width))
    shrunk = ndimage.grey_erosion(mask, size=(width, width))
    return np.clip(grown - shrunk, 0, 1)


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0)[: image.ndim])


def apply_style(
    style: str,
    image: np.ndarray,
    background_: np.ndarray,
    mask: np.ndarray,
    colour: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``image`` (the composed scene) in ``style``; float32 ``SIZE × SIZE × 3`` in [0, 1]."""
    m = mask[..., None]
    if style == "none":
        return image
    if style == "sketch":
        lines = np.clip(np.hypot(*np.gradient(_luma(background_))) * 2.5, 0, 1)
        paper = 0.97 - 0.45 * lines[..., None] + rng.normal(0, 0.012, (SIZE, SIZE, 1))
        outline = _edge(mask, 3)[..., None]
        return paper * (1 - outline) + colour * 0.9 * outline
    if style == "pixel":
        block = 4
        small = image.reshape(SIZE // block, block, SIZE // block, block, 3).mean((1, 3))
        saturation = small.max(-1, keepdims=True) - small.min(-1, keepdims=True)
        small = np.where(saturation < 0.12, _luma(small)[..., None], small)  # neutral stays gray
        small = np.round(small * 4) / 4
        return np.repeat(np.repeat(small, block, 0), block, 1)
    if style == "watercolor":
        soft = _blur(image, 1.6)
        paper = rng.normal(0, 1, (SIZE // 8, SIZE // 8))
        paper = ndimage.zoom(paper, 8, order=1)[..., None] * 0.035
        pooled = _edge(_blur(mask[..., None], 1.0)[..., 0], 3)[..., None] * 0.18
        return 0.72 * soft + 0.28 + paper - pooled * (1 - colour)
    if style == "neon":
        dark = 0.12 * background_
        glow = _blur(_edge(mask, 3)[..., None] * colour, 2.2) * 2.4
        tube = _edge(mask, 2)[..., None] * (0.45 + 0.55 * colour)
        return np.clip(dark * (1 - m) + 0.18 * colour * m + glow + tube, 0, 1)
    if style == "noir":
        gray = _luma(background_)[..., None] * 0.45
        vignette = 1 - 0.55 * (((_X - 32) ** 2 + (_Y - 32) ** 2) / 32**2)[..., None]
        grain = rng.normal(0, 0.035, (SIZE, SIZE, 1))
        lit = gray * np.clip(vignette, 0.2, 1) + grain
        return lit * (1 - m) + colour * 0.85 * m
    if style == "poster":
        contrast = np.clip((image - 0.5) * 1.6 + 0.5, 0, 1)
        flat = np.round(contrast * 2) / 2
        outline = _edge(mask, 3)[..., None]
        return flat * (1 - outline)
    if style == "pastel":
        warm = np.array([1.0, 0.96, 0.9], dtype=np.float32)
        return 0.6 * image + 0.4 * warm
    raise ValueError(f"unknown style {style!r}")
