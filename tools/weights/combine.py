"""The merged delta of several adapters' modules on one weight, by a merge method.

Linear methods (``MergeMethod.linear``) on plain LoRA modules take the fast path: the
factors are stacked, ``Σ c_j·s_j·B_j A_j = [c_1 s_1 B_1 | … ] @ [A_1; …]``, one matrix
product instead of one full-size delta per adapter (same sum, rounded once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tools.weights import lowrank
from tools.weights.adapter import AdapterModule
from tools.weights.methods import MergeMethod


def stacked_lora_delta(
    modules: Sequence[AdapterModule], coefficients: Sequence[float]
) -> Tensor | None:
    """``Σ c_j · scale_j · up_j @ down_j`` as one product; None unless all are plain LoRA."""
    if any(m.kind != "lora" or "mid" in m.factors or m.dora_scale is not None for m in modules):
        return None
    shapes = {m.natural_shape() for m in modules}
    if len(shapes) != 1:
        return None
    ups = [
        m.factors["up"].flatten(1).float() * (float(c) * m.scale)
        for m, c in zip(modules, coefficients, strict=True)
    ]
    downs = [m.factors["down"].flatten(1).float() for m in modules]
    return (torch.cat(ups, dim=1) @ torch.cat(downs, dim=0)).reshape(shapes.pop())


def combined_delta(
    modules: Sequence[AdapterModule],
    weights: Sequence[float],
    method: MergeMethod,
    options: Any,
    base: Tensor,
    part: str = "weight",
    layer: str = "",
) -> Tensor:
    """The method's combination of the modules' deltas for ``base`` (a weight or a bias).

    ``layer`` is the canonical name of the parameter (it seeds random methods' masks).
    """
    device = base.device
    modules = [m.to(device) for m in modules]
    if part == "bias":
        return method.combine([m.bias_delta() for m in modules], weights, options, layer)
    if method.linear is not None:
        stacked = stacked_lora_delta(modules, method.linear(weights, options))
        if stacked is not None:
            return lowrank.fit_shape(stacked, base.shape)
    deltas = [m.delta(base=base) for m in modules]
    return method.combine(deltas, weights, options, layer)
