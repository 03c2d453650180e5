"""Merge methods: pure tensor functions in a registry (name → function + validated params).

Every function combines same-shaped tensors with one weight each (already normalised by
the plan: softmax or raw) and returns one tensor in float32. They serve twice: on LoRA
deltas ``ΔW_j`` and on checkpoints — as weights ``W_i`` (``checkpoints="weights"``) or as
task vectors ``W_i − W_base`` (``checkpoints="task_vectors"``, the base added back after).
``layer`` names the tensor being merged (the canonical diffusers parameter name): random
methods (DARE) seed their drop masks from it, so every layer draws its own mask.

TIES-type methods follow one of two conventions (``convention``): ``mergekit`` (the
default) elects the sign on the *weighted* sum and divides by the summed weights of the
agreeing experts; ``peft`` elects it on the unweighted sum of the pruned tensors and
divides by the number of agreeing experts (``peft.utils.merge_utils``). Both elect ``+``
on a zero sum, and trim to the ``floor(density · n)`` largest magnitudes (at least one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from tools.weights.errors import MergeConfigError


class MethodParams(BaseModel):
    """Parameters of a merge method (unknown fields and NaN / infinite numbers are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NoParams(MethodParams):
    pass


class TaskArithmeticParams(MethodParams):
    scale: float = Field(1.0, description="λ multiplying the summed task vectors")


Convention = Literal["mergekit", "peft"]
SignMethod = Literal["total", "frequency"]


class TiesParams(MethodParams):
    density: float = Field(0.2, gt=0.0, le=1.0, description="fraction of entries kept per tensor")
    scale: float = 1.0
    convention: Convention = Field(
        "mergekit",
        description="mergekit: weighted sign vote, divide by agreeing weights; "
        "peft: unweighted vote, divide by agreeing count",
    )
    sign: SignMethod = Field("total", description="vote by summed values or by summed signs")


class DareParams(MethodParams):
    drop_rate: float = Field(0.5, ge=0.0, lt=1.0, description="probability of dropping an entry")
    seed: int = 0
    scale: float = 1.0


class DareTiesParams(DareParams):
    convention: Convention = "mergekit"
    sign: SignMethod = "total"


class MagnitudePruneParams(MethodParams):
    density: float = Field(0.2, gt=0.0, le=1.0, description="fraction of entries kept per tensor")
    scale: float = 1.0


class KLoraParams(MethodParams):
    top_k: int = Field(64, ge=1, description="entries whose magnitudes score a delta per layer")
    keep: int = Field(1, ge=1, description="deltas kept per layer (highest scores)")
    keep_total: bool = Field(
        False,
        description="scale the kept deltas so their weights add up to all the weights' sum "
        "(each layer keeps the merge's total strength, as K-LoRA applies the chosen LoRA whole)",
    )


MergeFn = Callable[[Sequence[Tensor], Sequence[float], Any, str], Tensor]
LinearFn = Callable[[Sequence[float], Any], list[float]]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    combine: MergeFn
    params: type[MethodParams]
    checkpoints: Literal["weights", "task_vectors"]
    description: str
    checkpoint_combine: MergeFn | None = None
    linear: LinearFn | None = None  # linear methods: combine(t, w) == Σ linear(w)_i · t_i

    def for_checkpoints(self) -> MergeFn:
        return self.checkpoint_combine or self.combine


def _f32(tensor: Tensor) -> Tensor:
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def _zeros(like: Tensor) -> Tensor:
    return torch.zeros(like.shape, dtype=torch.float32, device=like.device)


def weighted_sum(
    tensors: Sequence[Tensor], weights: Sequence[float], params: Any = None, layer: str = ""
) -> Tensor:
    """``Σ w_i · t_i`` (the paper's merge, with softmax-normalised weights)."""
    out = torch.mul(_f32(tensors[0]), float(weights[0]))
    for tensor, weight in zip(tensors[1:], weights[1:], strict=True):
        out.add_(_f32(tensor), alpha=float(weight))
    return out


def mean(
    tensors: Sequence[Tensor], weights: Sequence[float], params: Any = None, layer: str = ""
) -> Tensor:
    """Equal weights ``Σ t_i / n``, whatever the coefficients."""
    return weighted_sum(tensors, [1.0 / len(tensors)] * len(tensors))


def task_arithmetic(
    tensors: Sequence[Tensor],
    weights: Sequence[float],
    params: TaskArithmeticParams,
    layer: str = "",
) -> Tensor:
    """``λ · Σ w_i · τ_i`` over task vectors (Ilharco et al. 2023)."""
    return weighted_sum(tensors, weights).mul_(params.scale)


def trim(tensor: Tensor, density: float) -> Tensor:
    """Keep the ``floor(density · n)`` largest-magnitude entries (at least one), zero the rest."""
    flat = _f32(tensor).flatten()
    k = max(1, int(density * flat.numel()))
    if k >= flat.numel():
        return flat.reshape(tensor.shape).clone()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k, sorted=False).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(tensor.shape)


def layer_seed(seed: int, layer: str) -> int:
    """A 63-bit seed for ``layer``'s random draws, from the method seed and the layer name."""
    digest = hashlib.sha256(f"{seed}\0{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def drop_and_rescale(
    tensors: Sequence[Tensor], drop_rate: float, seed: int, layer: str
) -> list[Tensor]:
    """DARE's random pruning: keep each entry with probability ``1 − p``, divide by ``1 − p``.

    The masks of one layer come from one generator seeded by :func:`layer_seed`, drawn
    expert after expert as ``torch.bernoulli`` (peft's ``random_pruning`` under that seed).
    """
    keep = 1.0 - drop_rate
    generator = torch.Generator().manual_seed(layer_seed(seed, layer))
    pruned = []
    for tensor in tensors:
        mask = torch.bernoulli(torch.full(tensor.shape, keep), generator=generator)
        pruned.append(_f32(tensor) * mask.to(tensor.device) / keep)
    return pruned


def disjoint_merge(
    tensors: Sequence[Tensor],
    weights: Sequence[float],
    convention: Convention = "mergekit",
    sign: SignMethod = "total",
) -> Tensor:
    """TIES's sign election and disjoint mean over already pruned tensors (module docstring)."""
    weighted = [_f32(t) * float(w) for t, w in zip(tensors, weights, strict=True)]
    voters = weighted if convention == "mergekit" else [_f32(t) for t in tensors]
    votes = _zeros(voters[0])
    for voter in voters:
        votes.add_(voter.sign() if sign == "frequency" else voter)
    elected = torch.where(votes >= 0, 1.0, -1.0)
    total = _zeros(votes)
    divisor = _zeros(votes)
    for voter, value, weight in zip(voters, weighted, weights, strict=True):
        agree = voter.sign() == elected
        total.add_(torch.where(agree, value, 0.0))
        divisor.add_(agree.float(), alpha=float(weight) if convention == "mergekit" else 1.0)
    return torch.where(divisor != 0, total / torch.where(divisor != 0, divisor, 1.0), 0.0)


def ties(
    tensors: Sequence[Tensor], weights: Sequence[float], params: TiesParams, layer: str = ""
) -> Tensor:
    """TIES-merging (Yadav et al. 2023): trim, elect sign, disjoint mean."""
    trimmed = [trim(t, params.density) for t in tensors]
    merged = disjoint_merge(trimmed, weights, params.convention, params.sign)
    return merged.mul_(params.scale)


def dare(
    tensors: Sequence[Tensor], weights: Sequence[float], params: DareParams, layer: str = ""
) -> Tensor:
    """DARE (Yu et al. 2024): drop entries with probability p, rescale by 1/(1−p), sum."""
    pruned = drop_and_rescale(tensors, params.drop_rate, params.seed, layer)
    return weighted_sum(pruned, weights).mul_(params.scale)


def dare_ties(
    tensors: Sequence[Tensor], weights: Sequence[float], params: DareTiesParams, layer: str = ""
) -> Tensor:
    """DARE's drop-and-rescale, then TIES's sign election and disjoint mean (peft ``dare_ties``)."""
    pruned = drop_and_rescale(tensors, params.drop_rate, params.seed, layer)
    merged = disjoint_merge(pruned, weights, params.convention, params.sign)
    return merged.mul_(params.scale)


def magnitude_prune(
    tensors: Sequence[Tensor],
    weights: Sequence[float],
    params: MagnitudePruneParams,
    layer: str = "",
) -> Tensor:
    """Trim each tensor to its largest magnitudes, then the weighted sum (peft)."""
    trimmed = [trim(t, params.density) for t in tensors]
    return weighted_sum(trimmed, weights).mul_(params.scale)


def klora(
    tensors: Sequence[Tensor], weights: Sequence[float], params: KLoraParams, layer: str = ""
) -> Tensor:
    """K-LoRA-style selection: per layer, keep the weighted delta(s) whose ``top_k`` largest
    magnitudes sum highest (Ouyang et al. 2025), drop the others."""
    scaled = [_f32(t) * float(w) for t, w in zip(tensors, weights, strict=True)]
    scores = [
        s.abs().flatten().topk(min(params.top_k, s.numel()), sorted=False).values.sum().item()
        for s in scaled
    ]
    order = sorted(range(len(scaled)), key=lambda i: (-scores[i], i))[: params.keep]
    out = _zeros(tensors[0])
    for i in sorted(order):
        out.add_(scaled[i])
    kept = sum(float(weights[i]) for i in order)
    if params.keep_total and kept != 0:
        out.mul_(sum(float(w) for w in weights) / kept)
    return out


REGISTRY: dict[str, MergeMethod] = {}


def register(method: MergeMethod) -> None:
    """Add a merge method (names are unique)."""
    if method.name in REGISTRY:
        raise ValueError(f"merge method {method.name!r} is already registered")
    REGISTRY[method.name] = method


for _method in (
    MergeMethod(
        "diffgraph",
        weighted_sum,
        NoParams,
        "weights",
        "the paper: W = Σ softmax(w_ckpt)_i·W_i, ΔW = Σ softmax(w_peft)_j·ΔW_j, W + ΔW",
        linear=lambda w, p: [float(x) for x in w],
    ),
    MergeMethod(
        "equal",
        mean,
        NoParams,
        "weights",
        "every expert weighted 1/n",
        linear=lambda w, p: [1.0 / len(w)] * len(w),
    ),
    MergeMethod(
        "task_arithmetic",
        task_arithmetic,
        TaskArithmeticParams,
        "task_vectors",
        "W_base + λ·Σ w_i·(W_i − W_base); ΔW = λ·Σ w_j·ΔW_j",
        linear=lambda w, p: [float(x) * p.scale for x in w],
    ),
    MergeMethod("ties", ties, TiesParams, "task_vectors", "TIES: trim, elect sign, disjoint mean"),
    MergeMethod("dare", dare, DareParams, "task_vectors", "DARE: drop and rescale, then sum"),
    MergeMethod(
        "dare_ties",
        dare_ties,
        DareTiesParams,
        "task_vectors",
        "DARE drop and rescale, then TIES sign election and disjoint mean",
    ),
    MergeMethod(
        "magnitude_prune",
        magnitude_prune,
        MagnitudePruneParams,
        "task_vectors",
        "keep the largest magnitudes of each tensor, then the weighted sum",
    ),
    MergeMethod(
        "klora",
        klora,
        KLoraParams,
        "weights",
        "K-LoRA-style per-layer top-k magnitude selection of LoRA deltas; checkpoints by "
        "weighted sum",
        checkpoint_combine=weighted_sum,
    ),
):
    register(_method)


def get_method(name: str) -> MergeMethod:
    if name not in REGISTRY:
        raise MergeConfigError(
            f"unknown merge method {name!r}: expected one of {', '.join(sorted(REGISTRY))}"
        )
    return REGISTRY[name]


def method_params(name: str, params: Mapping[str, Any] | None = None) -> MethodParams:
    """Validated parameters of method ``name`` (clear error naming the bad field)."""
    method = get_method(name)
    try:
        return method.params.model_validate(dict(params or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        fields = ", ".join(method.params.model_fields) or "none"
        raise MergeConfigError(
            f"invalid parameters for merge method {name!r}: {problems} (accepted: {fields})"
        ) from exc


def normalized(coefficients: Sequence[float], mode: Literal["softmax", "raw"]) -> list[float]:
    """Plan weights: ``softmax(coefficients)`` (the paper) or the coefficients as given."""
    if not coefficients:
        return []
    if mode == "raw":
        return [float(c) for c in coefficients]
    values = torch.softmax(torch.tensor(coefficients, dtype=torch.float64), dim=0)
    return [float(v) for v in values]
