"""NaN and infinity refused: in expert tensors as they are read, and in merge results.

One ``isfinite`` pass per tensor: cheap next to the merge arithmetic, and a NaN caught here
never reaches a written file or a loaded model (where it makes black images).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tools.weights.adapter import Adapter
from tools.weights.errors import NonFiniteError


def is_finite(tensor: Tensor) -> bool:
    """True unless a floating-point ``tensor`` holds a NaN or an infinity."""
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def checked(tensor: Tensor, source: object, what: str) -> Tensor:
    """``tensor`` (``what``, e.g. ``tensor <key>``, of the expert file ``source``), refused
    if not finite."""
    if not is_finite(tensor):
        raise NonFiniteError(
            f"{source}: {what} holds NaN or infinite values, so the file is corrupt "
            "(or saved from a diverged training run); nothing was written or applied. Fix: "
            "re-download the file, or leave this expert out"
        )
    return tensor


def check_adapter(adapter: Adapter) -> None:
    """Refuse an adapter with a NaN or infinite factor, DoRA magnitude or bias delta."""
    for name, module in adapter.modules.items():
        tensors = {**module.factors, "dora_scale": module.dora_scale, "bias": module.bias}
        for part, tensor in tensors.items():
            if tensor is not None:
                checked(tensor, adapter.source, f"module {name} ({part})")


def checked_result(tensor: Tensor, what: str) -> Tensor:
    """``tensor`` computed from finite inputs (``what``: ``the merged tensor <key>`` …),
    refused if it overflowed."""
    if not is_finite(tensor):
        raise NonFiniteError(
            f"{what} is not finite (NaN or infinite) although every input is: "
            "the weights, strengths or LoRA alphas are too large for the dtype; nothing was "
            "written or applied. Fix: lower the weights, or leave the outsized expert out"
        )
    return tensor
