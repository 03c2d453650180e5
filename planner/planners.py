"""Planners behind one interface: the learned VGAE planner and its baselines.

A planner maps a prompt and the activated subgraph of its selected experts to one
coefficient in [0, 1] per expert; :func:`planner.merge.merge_weights` turns them into the
merge weights (softmax within checkpoints and within LoRAs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from pydantic import BaseModel, Field
from torch_geometric.data import HeteroData

from graph.subgraph import Subgraph
from planner.activation import activate
from planner.checkpoint import Checkpoint, read_checkpoint
from planner.errors import PlannerError
from planner.merge import merge_weights
from planner.model import MergingPlanner

PlanMode = Literal["learned", "equal", "random", "llm", "no-llm", "llm-fallback"]
# Expert features for the parameter-based planner: one row per subgraph expert.
ExpertFeaturizer = Callable[[Subgraph], torch.Tensor]


@dataclass(frozen=True)
class PlanRequest:
    """What every planner plans from: the prompt, its embedding and the activated experts."""

    prompt: str
    prompt_x: torch.Tensor
    subgraph: Subgraph


class ExpertPlan(BaseModel):
    expert_id: str
    kind: Literal["ckpt", "peft"]
    coefficient: float = Field(ge=0.0, le=1.0)
    merge_weight: float = Field(ge=0.0, le=1.0)
    alpha: float | None = None
    beta: float | None = None


class PlanResult(BaseModel):
    """One coefficient and one merge weight per expert, and where they came from."""

    prompt: str
    planner: str
    mode: PlanMode
    synthetic: bool = Field(
        False, description="true when the planner was trained on the synthetic reward"
    )
    demo: bool = Field(
        False,
        description="true when the coefficients mean nothing for real images: trained on the "
        "synthetic reward or on demo backends (tiny random weights)",
    )
    experts: list[ExpertPlan]
    notes: list[str] = Field(default_factory=list)

    @property
    def coefficients(self) -> torch.Tensor:
        return torch.tensor([e.coefficient for e in self.experts])

    @classmethod
    def from_coefficients(
        cls,
        request: PlanRequest,
        planner: str,
        mode: PlanMode,
        coefficients: torch.Tensor,
        alpha: torch.Tensor | None = None,
        beta: torch.Tensor | None = None,
        **extra,
    ) -> PlanResult:
        sub = request.subgraph
        weights = merge_weights(coefficients, sub.expert_kinds)
        experts = [
            ExpertPlan(
                expert_id=expert_id,
                kind=kind,
                coefficient=float(coefficients[i]),
                merge_weight=float(weights[i]),
                alpha=None if alpha is None else float(alpha[i]),
                beta=None if beta is None else float(beta[i]),
            )
            for i, (expert_id, kind) in enumerate(
                zip(sub.expert_ids, sub.expert_kinds, strict=True)
            )
        ]
        return cls(prompt=request.prompt, planner=planner, mode=mode, experts=experts, **extra)


class Planner(Protocol):
    name: str

    def plan(self, request: PlanRequest) -> PlanResult: ...


class VGAEPlanner:
    """The learned planner: the Beta mean α / (α + β) of the trained network.

    ``featurizer`` supplies the expert features when the model was configured with
    ``expert_features="parameters"`` (the parameter-based planner). ``synthetic`` and
    ``demo`` say what the model was trained on; plans carry them.
    """

    def __init__(
        self,
        model: MergingPlanner,
        synthetic: bool = False,
        featurizer: ExpertFeaturizer | None = None,
        name: str | None = None,
        demo: bool | None = None,
    ) -> None:
        if model.config.expert_features == "parameters" and featurizer is None:
            raise PlannerError(
                "this planner was trained on parameter-based expert features: give it a "
                "featurizer of the expert weights (planner.param_features)"
            )
        self.model = model.eval()
        self.synthetic = synthetic
        self.demo = synthetic if demo is None else demo
        self.featurizer = featurizer
        self.name = name or (
            "parameters" if model.config.expert_features == "parameters" else "vgae"
        )

    @classmethod
    def from_checkpoint(cls, path: Path, featurizer: ExpertFeaturizer | None = None) -> VGAEPlanner:
        return cls.from_saved(read_checkpoint(path), featurizer)

    @classmethod
    def from_saved(
        cls, saved: Checkpoint, featurizer: ExpertFeaturizer | None = None
    ) -> VGAEPlanner:
        """The planner of a read checkpoint, flagged with what it was trained on."""
        state = saved.state
        return cls(saved.build_model(), state.synthetic, featurizer, demo=state.demo)

    def activate(self, request: PlanRequest) -> HeteroData:
        features = self.featurizer(request.subgraph) if self.featurizer else None
        return activate(request.subgraph, request.prompt_x, self.model.config, features)

    def plan(self, request: PlanRequest) -> PlanResult:
        self.model.eval()
        with torch.no_grad():
            beta_plan = self.model(self.activate(request))
        notes = []
        if self.synthetic:
            notes.append("planner trained on the synthetic reward (demo): not for real images")
        elif self.demo:
            notes.append("planner trained on demo backends (tiny random weights)")
        return PlanResult.from_coefficients(
            request,
            self.name,
            "learned",
            beta_plan.mean(),
            beta_plan.alpha,
            beta_plan.beta,
            synthetic=self.synthetic,
            demo=self.demo,
            notes=notes,
        )


class EqualPlanner:
    """Equal weights: every coefficient 0.5 (the Beta(1, 1) mean), so a uniform softmax."""

    name = "equal"

    def plan(self, request: PlanRequest) -> PlanResult:
        coefficients = torch.full((request.subgraph.num_experts,), 0.5)
        return PlanResult.from_coefficients(request, self.name, "equal", coefficients)


class RandomPlanner:
    """Coefficients drawn uniformly from [0, 1] (seeded, reproducible)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def plan(self, request: PlanRequest) -> PlanResult:
        coefficients = torch.rand(request.subgraph.num_experts, generator=self.generator)
        return PlanResult.from_coefficients(request, self.name, "random", coefficients)


class OverridePlanner:
    """Another planner's plan with some coefficients set by the user (web UI steering);
    the merge weights are recomputed from the overridden coefficients."""

    def __init__(self, inner: Planner, coefficients: dict[str, float]) -> None:
        for expert_id, value in coefficients.items():
            if not 0.0 <= value <= 1.0:
                raise PlannerError(
                    f"coefficient of {expert_id!r} is {value}: expected a number from 0 to 1"
                )
        self.inner = inner
        self.coefficients = dict(coefficients)
        self.name = f"{inner.name}+override"

    def plan(self, request: PlanRequest) -> PlanResult:
        base = self.inner.plan(request)
        ids = [e.expert_id for e in base.experts]
        overridden = [i for i in ids if i in self.coefficients]
        if not overridden:
            return base
        values = torch.tensor(
            [self.coefficients.get(e.expert_id, e.coefficient) for e in base.experts]
        )
        notes = [*base.notes, *(f"coefficient of {i} set by the user" for i in overridden)]
        return PlanResult.from_coefficients(
            request,
            self.name,
            base.mode,
            values,
            synthetic=base.synthetic,
            demo=base.demo,
            notes=notes,
        )
