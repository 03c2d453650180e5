"""LoRA branches of an adapted layer: each LoRA's output ``ΔW x`` computed on its own.

A branch runs beside the base layer (``nn.Linear`` or ``nn.Conv2d``): plain LoRA factors
as ``B (A x)`` (for a conv, ``A`` with the base's kernel, stride and padding, then a 1×1
``B``), other adapter kinds as their delta. The global LoRA is the rank-``r`` truncated
SVD of the summed deltas of a layer's LoRAs, computed from the stacked factors (thin QR
of both sides, SVD of the small core) without building the full delta when every LoRA
has plain factors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tools.autolora.errors import FusionError
from tools.autolora.tokens import scaled_factors
from tools.weights.adapter import AdapterModule

FUSABLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class Branch:
    """``up @ down`` (or the dense ``up`` when ``down`` is None), as matrices over the
    flattened input ``[out, in·kh·kw]``, plus an optional output bias delta."""

    up: Tensor
    down: Tensor | None = None
    bias: Tensor | None = None

    def to(self, device: torch.device, dtype: torch.dtype) -> Branch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return Branch(move(self.up), move(self.down), move(self.bias))

    def delta(self) -> Tensor:
        """The branch's delta as a matrix ``[out, in·kh·kw]``."""
        return self.up if self.down is None else self.up @ self.down

    def __call__(self, base: nn.Module, x: Tensor) -> Tensor:
        """The branch's output for input ``x`` of the base layer ``base``."""
        if isinstance(base, nn.Conv2d):
            return self._conv(base, x)
        if self.down is None:
            return nn.functional.linear(x, self.up, self.bias)
        return nn.functional.linear(nn.functional.linear(x, self.down), self.up, self.bias)

    def _conv(self, base: nn.Conv2d, x: Tensor) -> Tensor:
        kernel = (base.in_channels // base.groups, *base.kernel_size)
        options = {"stride": base.stride, "padding": base.padding, "dilation": base.dilation}
        if base.padding_mode != "zeros":
            raise FusionError(
                f"conv layers with padding_mode={base.padding_mode!r} cannot be fused"
            )
        if self.down is None:
            weight = self.up.reshape(self.up.shape[0], *kernel)
            return nn.functional.conv2d(x, weight, self.bias, groups=base.groups, **options)
        if base.groups != 1:
            raise FusionError("grouped conv layers with LoRA factors cannot be fused")
        down = self.down.reshape(self.down.shape[0], *kernel)
        hidden = nn.functional.conv2d(x, down, None, **options)
        return nn.functional.conv2d(hidden, self.up[:, :, None, None], self.bias)


def out_width(base: nn.Module) -> int:
    """Output features (linear) or channels (conv) of a fusable layer."""
    return base.out_features if isinstance(base, nn.Linear) else base.out_channels


def module_branch(module: AdapterModule, base: nn.Module, weight: float = 1.0) -> Branch:
    """The branch of one adapter module on ``base``, its output multiplied by ``weight``.

    DoRA modules become their exact delta for this base weight.
    """
    if not module.fits(base.weight.shape):
        raise FusionError(
            f"{module.keys[0] if module.keys else 'a module'}: delta of shape "
            f"{module.natural_shape()} does not fit the layer's weight "
            f"{tuple(base.weight.shape)}. Fix: use LoRAs trained for this base model"
        )
    up, down = scaled_factors(module, base.weight.detach())
    bias = module.bias_delta()
    return Branch(up * weight, down, None if bias is None else bias * weight)


def global_branch(branches: Sequence[Branch], rank: int) -> Branch | None:
    """The rank-``rank`` truncated SVD of ``Σ branch.delta()`` as one more branch.

    Exact (up to float error) for factored branches: the summed delta ``U V`` with
    stacked factors ``U [out, R]``, ``V [R, in]`` is ``Q1 (R1 R2ᵀ) Q2ᵀ`` by thin QR, so
    only an ``R × R`` SVD is needed. Dense branches fall back to a randomised SVD of the
    summed delta (``torch.svd_lowrank``). Bias deltas are not part of it.
    """
    if rank <= 0 or not branches:
        return None
    if all(b.down is not None for b in branches):
        u = torch.cat([b.up.float() for b in branches], 1)
        v = torch.cat([b.down.float() for b in branches], 0)
        q1, r1 = torch.linalg.qr(u)
        q2, r2 = torch.linalg.qr(v.T)
        core_u, s, core_vh = torch.linalg.svd(r1 @ r2.T)
        k = min(rank, s.shape[0])
        up = (q1 @ core_u[:, :k]) * s[:k]
        down = core_vh[:k] @ q2.T
        return Branch(up, down)
    total = sum(b.delta().float() for b in branches)
    k = min(rank, *total.shape)
    u, s, v = torch.svd_lowrank(total, q=min(k + 8, *total.shape), niter=4)
    return Branch(u[:, :k] * s[:k], v[:, :k].T)
