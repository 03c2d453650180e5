"""The canonical adapter form every LoRA-type format is read into and written from.

An :class:`Adapter` maps target module names to :class:`AdapterModule`. Target names are
the diffusers module paths of the pipeline components, prefixed by the component:
``unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q``,
``text_encoder.text_model.encoder.layers.0.self_attn.q_proj``, ``text_encoder_2.…`` (SDXL),
``transformer.…`` (FLUX.1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from graph.records import BaseFamily
from tools.weights import lowrank
from tools.weights.names import canonical_name

ModuleKind = Literal["lora", "loha", "lokr", "full"]
COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")
# Largest |alpha / rank| accepted: trained LoRAs stay within a few units; beyond, corruption.
MAX_SCALE = 1024.0

# factor names each kind requires / accepts
_REQUIRED: dict[str, frozenset[str]] = {
    "lora": frozenset({"up", "down"}),
    "loha": frozenset({"w1_a", "w1_b", "w2_a", "w2_b"}),
    "lokr": frozenset(),
    "full": frozenset({"diff"}),
}
_OPTIONAL: dict[str, frozenset[str]] = {
    "lora": frozenset({"mid"}),
    "loha": frozenset({"t1", "t2"}),
    "lokr": frozenset({"w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b", "t2"}),
    "full": frozenset(),
}


@dataclass(frozen=True)
class AdapterModule:
    """One target module's factors and scale.

    ``factors`` by kind: lora ``up``, ``down`` (+ ``mid`` Tucker core); loha ``w1_a``,
    ``w1_b``, ``w2_a``, ``w2_b`` (+ ``t1``, ``t2``); lokr ``w1`` or ``w1_a``/``w1_b`` and
    ``w2`` or ``w2_a``/``w2_b`` (+ ``t2``); full ``diff``. ``alpha`` gives the scale
    ``alpha / rank`` (None: scale 1). ``dora_scale`` is the DoRA magnitude, broadcastable
    to the weight. ``bias`` is a delta for the module's bias. ``keys`` are the file keys
    the module was read from (for error messages).
    """

    kind: ModuleKind
    factors: Mapping[str, Tensor]
    alpha: float | None = None
    dora_scale: Tensor | None = None
    bias: Tensor | None = None
    shape: tuple[int, ...] | None = None
    keys: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        names = set(self.factors)
        missing = _REQUIRED[self.kind] - names
        extra = names - _REQUIRED[self.kind] - _OPTIONAL[self.kind]
        if self.kind == "lokr":
            if "w1" not in names and not {"w1_a", "w1_b"} <= names:
                missing = missing | {"w1 or w1_a+w1_b"}
            if "w2" not in names and not {"w2_a", "w2_b"} <= names:
                missing = missing | {"w2 or w2_a+w2_b"}
        if missing or extra:
            raise ValueError(
                f"{self.kind} module needs factors {sorted(_REQUIRED[self.kind])} "
                f"(optional {sorted(_OPTIONAL[self.kind])}); missing {sorted(missing)}, "
                f"unexpected {sorted(extra)}"
            )
        problem = self._factor_problem()
        if problem:
            raise ValueError(f"{self.kind} module: {problem}")

    def _factor_problem(self) -> str | None:
        """Why the factors cannot make a delta (rank 0, mismatched ranks, bad alpha)."""
        if self.alpha is not None and not math.isfinite(self.alpha):
            return f"alpha is {self.alpha}"
        f = {k: tuple(v.shape) for k, v in self.factors.items()}
        pairs = {"lora": [("up", "down")], "loha": [("w1_a", "w1_b"), ("w2_a", "w2_b")]}
        tucker = {"w1_a": "t1", "w2_a": "t2"}  # Tucker LoHa factors are laid out otherwise
        for up, down in pairs.get(self.kind, []):
            if tucker.get(up) in f:
                continue
            if len(f[up]) < 2 or len(f[down]) < 2:
                return f"{up} {f[up]} and {down} {f[down]} must be matrices or conv kernels"
            inner = f["mid"][:2] if "mid" in f and self.kind == "lora" else (f[down][0],) * 2
            if f[down][0] == 0 or f[up][1] != inner[0] or inner[1] != f[down][0]:
                return f"{up} {f[up]} and {down} {f[down]} do not share a positive rank"
            if self.kind == "lora" and any(n != 1 for n in f[up][2:]):
                return f"{up} {f[up]} must be a matrix or a 1x1 kernel"
        if abs(self.scale) > MAX_SCALE:
            return (
                f"alpha {self.alpha:g} over rank {self.rank} scales the delta by {self.scale:g}, "
                f"beyond the ±{MAX_SCALE:g} of any trained LoRA"
            )
        return None

    @property
    def rank(self) -> int | None:
        """The rank that ``alpha`` divides (None for full deltas and unfactored LoKr)."""
        f = self.factors
        if self.kind == "lora":
            return int(f["down"].shape[0])
        if self.kind == "loha":
            return int(f["w1_b"].shape[0])
        if self.kind == "lokr":
            for name in ("w2_b", "w1_b"):
                if name in f:
                    return int(f[name].shape[0])
        return None

    @property
    def scale(self) -> float:
        """The format's scaling rule: ``alpha / rank`` when both are known, else 1."""
        rank = self.rank
        if self.alpha is None or rank is None:
            return 1.0
        return float(self.alpha) / rank

    def to(self, device: torch.device | str) -> AdapterModule:
        """The module with its tensors on ``device`` (itself when already there)."""
        tensors = [*self.factors.values(), self.dora_scale, self.bias]
        if all(t is None or t.device == torch.device(device) for t in tensors):
            return self

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            factors={k: v.to(device) for k, v in self.factors.items()},
            dora_scale=move(self.dora_scale),
            bias=move(self.bias),
        )

    def natural_shape(self) -> tuple[int, ...]:
        """Shape of the delta the factors make, before fitting it to the target weight."""
        f = {k: tuple(v.shape) for k, v in self.factors.items()}
        if self.kind == "lora":
            up, down = f["up"], f["down"]
            if "mid" in f:
                return (up[0], down[1], *f["mid"][2:])
            return (up[0], *down[1:])
        if self.kind == "loha":
            if "t1" in f:
                return (f["w1_a"][1], f["w1_b"][1], *f["t1"][2:])
            return (f["w1_a"][0], f["w1_b"][1])
        if self.kind == "lokr":
            left = f.get("w1") or (f["w1_a"][0], f["w1_b"][1])
            if "w2" in f:
                right = f["w2"]
            elif "t2" in f:
                right = (f["w2_a"][1], f["w2_b"][1], *f["t2"][2:])
            else:
                right = (f["w2_a"][0], f["w2_b"][1])
            return (left[0] * right[0], left[1] * right[1], *right[2:])
        return f["diff"]

    def fits(self, shape: Sequence[int]) -> bool:
        """True when the delta can fill a weight of ``shape``."""
        return math.prod(self.natural_shape()) == math.prod(shape)

    def _natural(self) -> Tensor:
        """The unscaled delta, computed in float32 (float64 factors stay float64)."""
        f = {k: v if v.dtype == torch.float64 else v.float() for k, v in self.factors.items()}
        if self.kind == "lora":
            return lowrank.lora_delta(f["up"], f["down"], f.get("mid"))
        if self.kind == "loha":
            return lowrank.loha_delta(
                f["w1_a"], f["w1_b"], f["w2_a"], f["w2_b"], f.get("t1"), f.get("t2")
            )
        if self.kind == "lokr":
            return lowrank.lokr_delta(**f)
        return f["diff"]

    def delta(self, base: Tensor | None = None, shape: Sequence[int] | None = None) -> Tensor:
        """ΔW at full strength in the target weight's shape (float32 or wider).

        The target shape is ``shape``, else ``base.shape``, else the module's own. DoRA
        modules need ``base`` (the weight they are applied to): their delta depends on it.
        """
        target = tuple(shape) if shape is not None else None
        if target is None and base is not None:
            target = tuple(base.shape)
        target = target or self.shape
        natural = self._natural()
        fresh = self.kind != "full" or natural is not self.factors["diff"]
        delta = natural.mul_(self.scale) if fresh else natural * self.scale
        if target is not None:
            delta = lowrank.fit_shape(delta, target)
        if self.dora_scale is not None:
            if base is None:
                raise ValueError("a DoRA module's delta depends on the base weight: pass base")
            delta = lowrank.dora_delta(base.float(), delta, self.dora_scale.float())
        return delta

    def bias_delta(self) -> Tensor | None:
        return None if self.bias is None else self.bias.float() * self.scale


@dataclass
class Adapter:
    """A LoRA-type expert in canonical form.

    ``format``: ``kohya-lora``, ``locon``, ``loha``, ``lokr``, ``dora``, ``diffusers-lora``
    or ``peft-lora``; ``family``: the base-model family it was trained for (None when the
    keys do not tell); ``metadata``: the file's string metadata (kohya ``ss_*`` etc.).
    """

    format: str
    family: BaseFamily | None
    modules: dict[str, AdapterModule]
    metadata: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.modules = {canonical_name(name): m for name, m in self.modules.items()}

    @property
    def components(self) -> list[str]:
        return sorted({name.split(".", 1)[0] for name in self.modules})

    def ranks(self) -> dict[int, int]:
        """How many modules have each rank (0 for full deltas)."""
        counts: dict[int, int] = {}
        for module in self.modules.values():
            rank = module.rank or 0
            counts[rank] = counts.get(rank, 0) + 1
        return dict(sorted(counts.items()))

    def num_parameters(self) -> int:
        return sum(
            math.prod(t.shape)
            for m in self.modules.values()
            for t in (*m.factors.values(), m.dora_scale, m.bias)
            if t is not None
        )
