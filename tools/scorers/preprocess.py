"""Image preprocessing of the scorers, as their reference implementations do it.

The references score saved 8-bit images, so every transform starts from the image rounded to
``uint8`` (diffusers' ``numpy_to_pil``). Then:

- CLIP, the aesthetic predictor, ImageReward, PickScore and CLIPScore resize the 8-bit PIL
  image, short side to ``size`` (PIL bicubic; the long side truncated, as torchvision and
  transformers compute it), and centre-crop to ``size``×``size`` (torchvision rounds the
  offset, transformers floors it), then scale to [0, 1] and normalise;
- HPS v2 (its OpenCLIP fork, ``resize_longest_max=True``) scales to [0, 1] first, resizes the
  float tensor long side to ``size`` (bicubic, antialiased) and pads to a square with black.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
Preprocess = Callable[[torch.Tensor, int], torch.Tensor]


def _check(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [N, 3, H, W], got {tuple(images.shape)}")


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` floats in [0, 1] → the ``uint8`` pixels a saved image holds."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def normalize(
    images: torch.Tensor,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def _pil_resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    from PIL import Image

    pil = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    resized = pil.resize((width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1)


def clip_preprocess(
    images: torch.Tensor,
    size: int,
    crop: Literal["torchvision", "transformers"] = "torchvision",
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """``[N, 3, H, W]`` floats in [0, 1] → normalised ``[N, 3, size, size]``: PIL bicubic
    resize of the 8-bit image (short side to ``size``), centre crop (``crop``: whose rule)."""
    _check(images)
    pixels = to_uint8(images)
    height, width = pixels.shape[-2:]
    short, long = min(height, width), max(height, width)
    new_long = int(size * long / short)
    new_h, new_w = (size, new_long) if height <= width else (new_long, size)
    if (new_h, new_w) != (height, width):
        pixels = torch.stack([_pil_resize(image, new_h, new_w) for image in pixels])
    if crop == "torchvision":
        top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)  # torchvision
    else:
        top, left = (new_h - size) // 2, (new_w - size) // 2
    pixels = pixels[..., top : top + size, left : left + size]
    return normalize(pixels.to(images.device).float() / 255, mean, std)


hf_clip_preprocess: Preprocess = partial(clip_preprocess, crop="transformers")


def pad_square_preprocess(
    images: torch.Tensor,
    size: int,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """HPS v2's transform: 8-bit image to [0, 1], long side resized to ``size`` (bicubic,
    antialiased, on the float tensor), padded with black to ``size``×``size``, normalised."""
    _check(images)
    pixels = to_uint8(images).float() / 255
    height, width = pixels.shape[-2:]
    scale = size / max(height, width)
    if scale != 1.0:
        new_h, new_w = round(height * scale), round(width * scale)
        pixels = F.interpolate(
            pixels, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )
        height, width = new_h, new_w
    pad_h, pad_w = size - height, size - width
    pixels = F.pad(pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    return normalize(pixels, mean, std)
