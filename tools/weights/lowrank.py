"""Pure tensor math that rebuilds a full weight delta from each adapter algorithm's factors.

Conventions follow the files in the wild (kohya sd-scripts, LyCORIS, PEFT): ``up`` is
``[out, rank(, 1, 1)]``, ``down`` is ``[rank, in(, kh, kw)]``, Tucker cores are
``[rank, rank, kh, kw]``. Every function returns the unscaled delta; callers multiply by
the module's scale (alpha / rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def lora_delta(up: Tensor, down: Tensor, mid: Tensor | None = None) -> Tensor:
    """``up @ down`` (LoRA, LoCon) or ``up ∘ mid ∘ down`` (LoCon with a Tucker ``lora_mid``)."""
    up2 = up.flatten(1)
    if mid is not None:
        return torch.einsum("oa,abhw,bi->oihw", up2, mid, down.flatten(1))
    delta = up2 @ down.flatten(1)
    if down.dim() == 4:
        return delta.reshape(up.shape[0], *down.shape[1:])
    return delta


def _tucker(core: Tensor, left: Tensor, right: Tensor) -> Tensor:
    """LyCORIS/PEFT CP rebuild: ``left`` contracts the core's first index, ``right`` its second."""
    return torch.einsum("ijkl,jr,ip->prkl", core, right, left)


def loha_delta(
    w1_a: Tensor,
    w1_b: Tensor,
    w2_a: Tensor,
    w2_b: Tensor,
    t1: Tensor | None = None,
    t2: Tensor | None = None,
) -> Tensor:
    """LoHa: Hadamard product of two low-rank products ``(w1_a @ w1_b) * (w2_a @ w2_b)``."""
    if t1 is not None and t2 is not None:
        return _tucker(t1, w1_a, w1_b) * _tucker(t2, w2_a, w2_b)
    return (w1_a @ w1_b) * (w2_a @ w2_b)


def lokr_delta(
    w1: Tensor | None = None,
    w1_a: Tensor | None = None,
    w1_b: Tensor | None = None,
    w2: Tensor | None = None,
    w2_a: Tensor | None = None,
    w2_b: Tensor | None = None,
    t2: Tensor | None = None,
) -> Tensor:
    """LoKr: Kronecker product ``w1 ⊗ w2``, each factor full or a low-rank product."""
    left = w1 if w1 is not None else w1_a @ w1_b
    if w2 is not None:
        right = w2
    elif t2 is not None:
        right = _tucker(t2, w2_a, w2_b)
    else:
        right = w2_a @ w2_b
    if right.dim() == 4:
        left = left[:, :, None, None]
    return torch.kron(left, right.contiguous())


def fit_shape(delta: Tensor, shape: Sequence[int]) -> Tensor:
    """``delta`` in the target weight's shape (same number of elements required)."""
    shape = tuple(shape)
    if tuple(delta.shape) == shape:
        return delta
    if delta.numel() != torch.Size(shape).numel():
        raise ValueError(f"delta of shape {tuple(delta.shape)} cannot fill a weight of {shape}")
    return delta.reshape(shape)


def dora_delta(base: Tensor, delta: Tensor, magnitude: Tensor) -> Tensor:
    """The delta a DoRA module makes: ``m · (W + ΔW) / ‖W + ΔW‖ − W``.

    ``magnitude`` is broadcastable to the weight: ``[out, 1, ...]`` normalises each output
    row (PEFT, LyCORIS ``wd_on_out``), ``[1, in, ...]`` each input column (original DoRA).
    """
    weight = base.to(delta.dtype) + delta
    if magnitude.dim() > 1 and magnitude.shape[0] == 1 and weight.shape[0] != 1:
        norm = weight.transpose(0, 1).flatten(1).norm(dim=1)
        norm = norm.reshape(1, -1, *([1] * (weight.dim() - 2)))
    else:
        norm = weight.flatten(1).norm(dim=1).reshape(-1, *([1] * (weight.dim() - 1)))
    return weight * (magnitude.to(delta.dtype) / norm) - base.to(delta.dtype)
