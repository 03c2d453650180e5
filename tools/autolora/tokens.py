"""A LoRA's weights as the weight encoder reads them: one factor pair per adapted layer.

Each adapted layer gives its scaled ``B`` (``up``, ``[out, r]``) and ``A`` (``down``,
``[r, in]``), so that a probe ``p`` becomes the token ``B (A p)`` without the full delta
being built. Adapter kinds without plain factors (LoHa, LoKr, Tucker cores, full deltas)
give their delta as ``up`` and no ``down``. Conv layers are read as matrices
``[out, in·kh·kw]``. Pure tensor work on canonical adapters of the weights toolkit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor

from tools.weights.adapter import Adapter, AdapterModule


@dataclass(frozen=True)
class LayerFactors:
    """One adapted layer: ``up @ down`` (or ``up`` alone when ``down`` is None) is its
    scaled delta as a matrix ``[out, in]``."""

    name: str
    up: Tensor
    down: Tensor | None

    @property
    def out_dim(self) -> int:
        return int(self.up.shape[0])

    @property
    def in_dim(self) -> int:
        return int((self.up if self.down is None else self.down).shape[1])

    @property
    def type_key(self) -> str:
        return layer_type_key(self.name, self.out_dim, self.in_dim)


@dataclass(frozen=True)
class LoraLayers:
    """Every adapted layer of one LoRA, in the adapter's module order."""

    source: str
    layers: tuple[LayerFactors, ...]


def layer_role(name: str) -> str:
    """``component.role`` of a module name: its last non-numeric path part.

    ``unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0`` →
    ``unet.to_out``.
    """
    parts = name.split(".")
    role = next((p for p in reversed(parts[1:]) if not p.isdigit()), parts[-1])
    return f"{parts[0]}.{role}"


def layer_type_key(name: str, out_dim: int, in_dim: int) -> str:
    return f"{layer_role(name)}:{out_dim}x{in_dim}"


def scaled_factors(
    module: AdapterModule, base: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """``(up · scale, down)`` as float32 matrices, or ``(delta, None)`` for modules without
    plain factors.

    DoRA modules give their exact delta for the weight ``base``; without ``base`` their
    magnitude is left out (the low-rank direction is what characterises the LoRA).
    """
    if module.dora_scale is not None and base is None:
        module = dataclasses.replace(module, dora_scale=None)
    f = module.factors
    if module.kind == "lora" and "mid" not in f and module.dora_scale is None:
        up = f["up"].reshape(f["up"].shape[0], -1).float() * module.scale
        return up, f["down"].reshape(f["down"].shape[0], -1).float()
    delta = module.delta(base=base)
    return delta.reshape(delta.shape[0], -1), None


def module_factors(name: str, module: AdapterModule) -> LayerFactors:
    """The scaled factors of one adapter module (its delta when it has no plain factors)."""
    return LayerFactors(name, *scaled_factors(module))


def lora_layers(adapter: Adapter) -> LoraLayers:
    """The factors of every module of ``adapter``."""
    layers = tuple(module_factors(name, m) for name, m in adapter.modules.items())
    return LoraLayers(adapter.source, layers)
