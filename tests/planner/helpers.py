"""Small hand-made subgraphs and configs for exact planner tests."""

from __future__ import annotations

import torch

from graph.subgraph import Subgraph
from planner.config import MetricScale, PlannerConfig

DIM = 8


def unit(seed: int, dim: int = DIM) -> torch.Tensor:
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def toy_subgraph(metrics: tuple[str, ...] = ("m1", "m2")) -> Subgraph:
    """Experts [c0 (ckpt), l0, l1 (LoRAs)], references r0..r2, four calibration edges.

    Edge (l1, r2) measured only ``m2`` when there are two metrics.
    """
    attr = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [0.0, 8.0]])[:, : len(metrics)]
    mask = torch.ones_like(attr, dtype=torch.bool)
    if len(metrics) == 2:
        mask[3, 0] = False
    return Subgraph(
        expert_ids=["c0", "l0", "l1"],
        expert_kinds=["ckpt", "peft", "peft"],
        ref_ids=["r0", "r1", "r2"],
        expert_x=torch.stack([unit(1), unit(2), unit(3)]),
        ref_x=torch.stack([unit(10), unit(11), unit(12)]),
        edge_index=torch.tensor([[0, 1, 1, 2], [0, 0, 1, 2]]),
        edge_attr=attr,
        edge_mask=mask,
        metric_names=list(metrics),
    )


def toy_config(**overrides) -> PlannerConfig:
    values = {
        "metrics": [MetricScale(name="m1", mean=1.0, std=2.0), MetricScale(name="m2")],
        "feature_dim": DIM,
        "input_dim": 16,
        "hidden_dim": 16,
        "latent_dim": 4,
        "decoder_hidden": 8,
        "prompt_top_m": 2,
    }
    return PlannerConfig(**{**values, **overrides})
