"""From coefficients to merge weights: softmax within checkpoints and within LoRAs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from planner.errors import PlannerError

if TYPE_CHECKING:
    from graph.records import Expert
    from planner.planners import PlanResult
    from tools.weights.plan import MergePlan

KINDS = ("ckpt", "peft")


def kind_columns(kinds: Sequence[str]) -> dict[str, list[int]]:
    """Positions of each expert kind present, in ``KINDS`` order."""
    columns = {kind: [i for i, k in enumerate(kinds) if k == kind] for kind in KINDS}
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"expert kinds {unknown} are unknown: expected 'ckpt' or 'peft'")
    return {kind: idx for kind, idx in columns.items() if idx}


def merge_weights(coefficients: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
    """``softmax`` of the coefficients (last dimension) within each expert kind.

    The checkpoint weights sum to 1 (``W = Σ π_i W_i``) and so do the LoRA weights
    (``ΔW = Σ π_j ΔW_j``).
    """
    if coefficients.shape[-1] != len(kinds):
        raise ValueError(f"{coefficients.shape[-1]} coefficients for {len(kinds)} experts")
    weights = torch.empty_like(coefficients)
    for idx in kind_columns(kinds).values():
        weights[..., idx] = torch.softmax(coefficients[..., idx], dim=-1)
    return weights


def to_merge_plan(
    result: PlanResult,
    experts: Sequence[Expert],
    method: str = "diffgraph",
    base: Path | None = None,
) -> MergePlan:
    """The weights toolkit's ``MergePlan`` for a plan: each expert's downloaded file with
    its coefficient, checkpoints and LoRAs apart, ``normalize="softmax"``."""
    from tools.weights.plan import MergePlan, WeightedExpert

    by_id = {e.id: e for e in experts}
    missing = [p.expert_id for p in result.experts if p.expert_id not in by_id]
    if missing:
        raise PlannerError(f"no expert record for planned expert(s) {missing}: pass every record")
    groups: dict[str, list[WeightedExpert]] = {kind: [] for kind in KINDS}
    for planned in result.experts:
        expert = by_id[planned.expert_id]
        if expert.file is None or not expert.file.path:
            raise PlannerError(
                f"expert {expert.id!r} has no downloaded weights: download it first "
                "(`diffgraph crawl` / `diffgraph graph ...`), or leave it out with --experts"
            )
        groups[planned.kind].append(
            WeightedExpert(
                path=Path(expert.file.path),
                coefficient=planned.coefficient,
                name=expert.name,
                expert_id=expert.id,
            )
        )
    return MergePlan(checkpoints=groups["ckpt"], loras=groups["peft"], method=method, base=base)
