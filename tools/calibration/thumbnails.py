"""Calibration's sample images as small PNGs (what an expert's page shows)."""

from __future__ import annotations

import io

import torch

MAX_SIDE = 128  # pixels; the page enlarges smaller images itself (nearest neighbour)


def thumbnail_png(image: torch.Tensor, max_side: int = MAX_SIDE) -> bytes:
    """A ``[3, H, W]`` image in [0, 1] as PNG bytes, shrunk to fit ``max_side`` (never
    enlarged: a 32-pixel world image stays 32 pixels)."""
    from PIL import Image

    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    picture = Image.fromarray(array)
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()
