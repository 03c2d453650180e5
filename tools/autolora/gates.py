"""Fine-grained gates: per-dimension weights for each LoRA branch of an adapted layer.

For a layer with base output ``h0`` and branch outputs ``h_i`` (each selected LoRA, and
the global LoRA), with ``n(·)`` a layer norm over the feature dimension::

    g_i = sigmoid(w_base ⊙ n(h0) + w_lora ⊙ n(h_i) + w_cross ⊙ n(h0) ⊙ n(h_i) + bias)
    out = h0 + scale · Σ_i g_i ⊙ h_i

``w_base``, ``w_lora``, ``w_cross`` and ``bias`` have one value per output dimension and
``scale`` is one learned number per layer. The gates are shared by all LoRAs, so one
trained bank fuses any number of them. At initialisation (weights 0, bias 0, scale 2)
every gate is 0.5 and the output is the plain sum ``h0 + Σ h_i``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from tools.autolora.config import FusionConfig

GATE_PARAMS = ("w_base", "w_lora", "w_cross", "bias", "scale")


def feature_norm(t: Tensor, dim: int, eps: float) -> Tensor:
    """Layer norm without affine parameters over dimension ``dim``."""
    if dim in (-1, t.dim() - 1):
        return nn.functional.layer_norm(t, t.shape[-1:], eps=eps)
    return nn.functional.layer_norm(t.movedim(dim, -1), t.shape[dim : dim + 1], eps=eps).movedim(
        -1, dim
    )


def gated_sum(
    base: Tensor,
    branches: Sequence[Tensor],
    w_base: Tensor,
    w_lora: Tensor,
    w_cross: Tensor,
    bias: Tensor,
    scale: Tensor,
    dim: int = -1,
    eps: float = 1e-5,
) -> Tensor:
    """``base + scale · Σ g_i ⊙ branch_i`` (see the module doc); pure.

    The per-dimension parameters are 1-D over ``base``'s dimension ``dim``.
    """
    shape = [1] * base.dim()
    shape[dim] = -1

    def per_dim(p: Tensor) -> Tensor:
        return p.to(base.dtype).reshape(shape)

    wb, wl, wc, b = (per_dim(p) for p in (w_base, w_lora, w_cross, bias))
    nb = feature_norm(base, dim, eps)
    base_term = wb * nb + b
    total = None
    for h in branches:
        nh = feature_norm(h, dim, eps)
        gate = torch.sigmoid(base_term + wl * nh + wc * nb * nh)
        total = gate * h if total is None else total + gate * h
    if total is None:
        return base
    return base + scale.to(base.dtype) * total


class LayerGate(nn.Module):
    """The gate parameters of one layer of output width ``width``."""

    def __init__(self, width: int, init_scale: float = 2.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.width = width
        self.eps = eps
        self.w_base = nn.Parameter(torch.zeros(width))
        self.w_lora = nn.Parameter(torch.zeros(width))
        self.w_cross = nn.Parameter(torch.zeros(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))

    def forward(self, base: Tensor, branches: Sequence[Tensor], dim: int = -1) -> Tensor:
        return gated_sum(
            base,
            branches,
            self.w_base,
            self.w_lora,
            self.w_cross,
            self.bias,
            self.scale,
            dim,
            self.eps,
        )


class GateBank(nn.Module):
    """One :class:`LayerGate` per adapted layer named in ``config.layers``."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        self.config = config
        self.names = sorted(config.layers)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.gates = nn.ModuleList(
            LayerGate(config.layers[n], config.init_scale, config.eps) for n in self.names
        )

    def gate(self, name: str) -> LayerGate | None:
        i = self.index.get(name)
        return None if i is None else self.gates[i]

    def default_gate(self, width: int) -> LayerGate:
        """An untrained gate (the plain sum) for a layer the bank has no gate for."""
        return LayerGate(width, self.config.init_scale, self.config.eps)

    def named_tensors(self) -> dict[str, Tensor]:
        """``<layer>.<param>`` → tensor, the checkpoint layout."""
        return {
            f"{name}.{param}": getattr(gate, param).detach()
            for name, gate in zip(self.names, self.gates, strict=True)
            for param in GATE_PARAMS
        }

    def load_named_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Inverse of :meth:`named_tensors` (shapes checked by ``copy_``)."""
        with torch.no_grad():
            for name, gate in zip(self.names, self.gates, strict=True):
                for param in GATE_PARAMS:
                    getattr(gate, param).copy_(tensors[f"{name}.{param}"])
