"""Trainable adapters in the formats of the wild, built on the weights toolkit's own math.

A :class:`TrainableAdapter` holds factor tensors for each target module of the UNet and
returns, for a training step, the UNet's weights with their deltas added — computed by
:class:`tools.weights.adapter.AdapterModule`, the same code that applies the saved file
later, so what is trained is exactly what loads. Formats: kohya LoRA, LoCon (LoRA on
convolutions too), LoHa, LoKr, DoRA and diffusers/PEFT LoRA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from graph.records import BaseFamily
from tools.weights.adapter import Adapter, AdapterModule

AdapterFormat = Literal["lora", "locon", "loha", "lokr", "dora", "peft"]
# kohya's default LoRA targets: every linear layer of the transformer blocks
_LINEAR_SUFFIXES = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2",
                    "proj_in", "proj_out")  # fmt: skip


@dataclass(frozen=True)
class AdapterSpec:
    """How an expert's adapter is shaped: format, rank, alpha."""

    format: AdapterFormat
    rank: int = 4
    alpha: float | None = None  # None: alpha = rank (scale 1)


def target_modules(unet: nn.Module, spec: AdapterSpec) -> dict[str, nn.Module]:
    """The UNet modules an adapter of ``spec`` trains, by diffusers module path."""
    found: dict[str, nn.Module] = {}
    for name, module in unet.named_modules():
        if (isinstance(module, nn.Linear) and name.endswith(_LINEAR_SUFFIXES)) or (
            spec.format == "locon"
            and isinstance(module, nn.Conv2d)
            and ".resnets." in name
            and name.endswith(("conv1", "conv2"))
        ):
            found[name] = module
    return found


def _factor(shape: tuple[int, ...], limit: int = 8) -> tuple[int, int]:
    """``dim = a · b`` with ``a`` the largest divisor ≤ ``limit`` (LoKr's left factor)."""
    dim = shape[0]
    a = max(d for d in range(1, limit + 1) if dim % d == 0)
    return a, dim // a


class TrainableAdapter(nn.Module):
    """Factors of one adapter over ``unet`` (the base weights are not trained)."""

    def __init__(self, unet: nn.Module, spec: AdapterSpec, seed: int) -> None:
        super().__init__()
        self.spec = spec
        self.modules_ = target_modules(unet, spec)
        self.base = {n: m.weight.detach() for n, m in self.modules_.items()}
        g = torch.Generator().manual_seed(seed)
        self.factors = nn.ModuleDict()
        self.magnitudes = nn.ParameterDict()
        for name, module in self.modules_.items():
            key = name.replace(".", "__")
            self.factors[key] = nn.ParameterDict(self._init(module.weight, g))
            if spec.format == "dora":
                norm = module.weight.detach().flatten(1).norm(dim=1, keepdim=True)
                self.magnitudes[key] = nn.Parameter(norm.clone())

    def _init(self, weight: torch.Tensor, g: torch.Generator) -> dict[str, nn.Parameter]:
        r = self.spec.rank
        out_f, in_f = weight.shape[0], math.prod(weight.shape[1:])
        fmt = self.spec.format

        def rand(*shape: int, fan: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g) / fan**0.5)

        def zeros(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape))

        if fmt == "loha":
            return {"w1_a": rand(out_f, r, fan=r), "w1_b": rand(r, in_f, fan=in_f),
                    "w2_a": zeros(out_f, r), "w2_b": rand(r, in_f, fan=in_f)}  # fmt: skip
        if fmt == "lokr":
            a, b = _factor((out_f,))
            c, d = _factor((in_f,))
            return {"w1": rand(a, c, fan=c), "w2_a": zeros(b, r), "w2_b": rand(r, d, fan=d)}
        down_shape = (r, *weight.shape[1:]) if weight.dim() == 4 else (r, in_f)
        up_shape = (out_f, r, 1, 1) if weight.dim() == 4 else (out_f, r)
        return {"down": rand(*down_shape, fan=in_f), "up": zeros(*up_shape)}

    def module(self, name: str) -> AdapterModule:
        """The toolkit's module for ``name`` over the current (trainable) factors."""
        key = name.replace(".", "__")
        kind = {"loha": "loha", "lokr": "lokr"}.get(self.spec.format, "lora")
        factors = dict(self.factors[key].items())
        alpha = self.spec.alpha if self.spec.alpha is not None else float(self.spec.rank)
        magnitude = self.magnitudes[key] if self.spec.format == "dora" else None
        if magnitude is not None:
            magnitude = magnitude.reshape(-1, *([1] * (self.base[name].dim() - 1)))
        return AdapterModule(kind=kind, factors=factors, alpha=alpha, dora_scale=magnitude)

    def weights(self, strength: float = 1.0) -> dict[str, torch.Tensor]:
        """``{"<module>.weight": W + strength·ΔW}`` for ``torch.func.functional_call``."""
        out = {}
        for name, base in self.base.items():
            delta = self.module(name).delta(base=base, shape=base.shape)
            out[f"{name}.weight"] = base + strength * delta
        return out

    def to_adapter(self, metadata: dict[str, str]) -> Adapter:
        """The adapter in canonical form (fp16 factors, as files in the wild), for saving."""
        modules = {}
        for name in self.base:
            m = self.module(name)
            half = {k: v.detach().half() for k, v in m.factors.items()}
            dora = None if m.dora_scale is None else m.dora_scale.detach().half()
            modules[f"unet.{name}"] = AdapterModule(
                kind=m.kind, factors=half, alpha=m.alpha, dora_scale=dora
            )
        fmt = {"lora": "kohya-lora", "peft": "diffusers-lora"}.get(
            self.spec.format, self.spec.format
        )
        return Adapter(format=fmt, family=BaseFamily.SD15, modules=modules, metadata=metadata)
