"""Image preprocessing of CLIP-family scorers as tensor math (no torchvision, no PIL).

Resize the short side to ``size`` (bicubic, antialiased), centre-crop to ``size``×``size``,
normalise by the channel mean / std: the transform the published scorers were trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(
    images: torch.Tensor,
    size: int,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """``[N, 3, H, W]`` floats in [0, 1] → normalised ``[N, 3, size, size]``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [N, 3, H, W], got {tuple(images.shape)}")
    images = images.float()
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    if (new_h, new_w) != (height, width):
        images = F.interpolate(
            images, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )
    top, left = (new_h - size) // 2, (new_w - size) // 2
    images = images[..., top : top + size, left : left + size].clamp(0, 1)
    mean_t = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t
