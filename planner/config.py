"""The planner model's configuration: sizes, prompt wiring, input scaling and ablations.

It is stored inside every checkpoint, so a loaded planner rebuilds exactly the network
and input pipeline it was trained with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ExpertFeatures = Literal["description", "zero", "learnable", "parameters"]
EdgeFeatures = Literal["calibration", "none", "learnable"]


class MetricScale(BaseModel):
    """Standardisation of one calibration metric: ``(score - mean) / std``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    mean: float = 0.0
    std: float = Field(1.0, gt=0)


class PlannerConfig(BaseModel):
    """Architecture and input pipeline of a :class:`planner.model.MergingPlanner`.

    Ablations (paper §4): ``expert_features`` ``zero`` drops the registration description
    (w/o registration), ``learnable`` replaces it with a trained vector per known expert id
    (unknown ids share one out-of-vocabulary vector), ``parameters`` uses a fixed projection
    of the expert's weights (the parameter-based planner). ``edge_features`` ``none`` zeroes
    the calibration scores (w/o calibration) and ``learnable`` replaces them with one trained
    vector; the graph structure is kept in every mode.
    """

    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricScale] = Field(default_factory=list)
    feature_dim: int = Field(384, ge=1, description="node feature size (MiniLM: 384)")
    input_dim: int = Field(64, ge=1, description="width of each node type's input projection")
    hidden_dim: int = Field(64, ge=2)
    latent_dim: int = Field(32, ge=1)
    heads: int = Field(2, ge=1, description="attention heads of the first graph layer")
    decoder_hidden: int = Field(64, ge=1)
    prompt_top_m: int = Field(8, ge=0, description="reference prompts wired to the prompt node")
    max_log_concentration: float = Field(
        10.0, gt=0, description="bound of a and b before e^a, e^b (keeps α, β finite)"
    )
    expert_features: ExpertFeatures = "description"
    edge_features: EdgeFeatures = "calibration"
    expert_vocab: list[str] = Field(
        default_factory=list, description="expert ids with their own learnable feature"
    )

    @model_validator(mode="after")
    def _check(self) -> PlannerConfig:
        if self.hidden_dim % self.heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be a multiple of heads")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names repeat: {names}")
        return self

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]
