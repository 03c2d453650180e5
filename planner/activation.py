"""Subgraph activation: the selected experts, their reference prompts and the user prompt.

The activated graph is a torch-geometric ``HeteroData`` with node types ``expert`` (the
selected experts in subgraph order, ``kind`` 0 = checkpoint, 1 = LoRA), ``ref`` (their
one-hop reference prompts) and ``prompt`` (the user prompt as a temporary node with its
MiniLM embedding), and these relations, each also present reversed (``rev_<name>``):

- ``expert -calibrated_on-> ref``: every calibration edge of the subgraph; features are
  the M standardised scores (0 where not measured), the M measured flags and a constant 1.
- ``prompt -near-> ref``: the prompt's ``prompt_top_m`` most similar reference prompts of
  the subgraph; feature: the cosine similarity.
- ``prompt -matches-> expert``: the prompt and every expert; feature: the cosine similarity
  of the prompt and the expert's feature, filled in by the model after its input ablations
  (:class:`planner.features.InputFeatures`), so that dropping the description also drops it.

Design choice: the prompt reaches each expert two ways, directly (how well the expert's
registered skill matches the prompt) and through the reference prompts like it (how well
the expert actually scored on them). Each relation is aggregated separately, so the single
prompt → expert message is not diluted among an expert's many calibration edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import HeteroData

from graph.subgraph import Subgraph
from planner.config import MetricScale, PlannerConfig
from planner.errors import CheckpointError, PlannerError
from planner.merge import KINDS

CALIBRATED = ("expert", "calibrated_on", "ref")
NEAR = ("prompt", "near", "ref")
MATCHES = ("prompt", "matches", "expert")
RELATIONS = (CALIBRATED, NEAR, MATCHES)


def reverse(relation: tuple[str, str, str]) -> tuple[str, str, str]:
    src, name, dst = relation
    return dst, f"rev_{name}", src


def edge_types() -> list[tuple[str, str, str]]:
    """Every relation of the activated graph, forward and reversed."""
    return [r for relation in RELATIONS for r in (relation, reverse(relation))]


def calibration_dim(num_metrics: int) -> int:
    """Width of the calibration edge features for ``num_metrics`` metrics."""
    return 2 * num_metrics + 1


def metric_columns(graph_metrics: Sequence[str], planner_metrics: Sequence[str]) -> list[int]:
    """Columns of the graph's edge scores in the planner's metric order.

    A graph with no calibration at all fits any planner; otherwise the metric sets must be
    equal, because they fix the width of the edge features the planner was trained on.
    """
    if not graph_metrics:
        return []
    if set(graph_metrics) != set(planner_metrics):
        raise CheckpointError(
            f"the planner was trained with calibration metrics {list(planner_metrics)} (edge "
            f"features of dim {calibration_dim(len(planner_metrics))}) but the graph has "
            f"{list(graph_metrics)} (dim {calibration_dim(len(graph_metrics))}): train a "
            "planner on this graph with `diffgraph train-planner`, or calibrate the graph with "
            "the same metrics"
        )
    return [list(graph_metrics).index(name) for name in planner_metrics]


def fit_metric_scales(subgraph: Subgraph) -> list[MetricScale]:
    """Mean and standard deviation of each measured metric over the subgraph's edges."""
    scales = []
    for column, name in enumerate(subgraph.metric_names):
        values = subgraph.edge_attr[subgraph.edge_mask[:, column], column].double()
        std = float(values.std(unbiased=False)) if values.numel() > 1 else 0.0
        mean = float(values.mean()) if values.numel() else 0.0
        scales.append(MetricScale(name=name, mean=mean, std=std if std > 1e-8 else 1.0))
    return scales


def prompt_links(ref_x: torch.Tensor, prompt_x: torch.Tensor, top_m: int):
    """Indices and cosine similarities of the ``top_m`` reference prompts nearest the prompt."""
    m = min(top_m, ref_x.shape[0])
    if m == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    sims = torch.nn.functional.cosine_similarity(ref_x, prompt_x[None], dim=1)
    top = torch.topk(sims, m)
    return top.indices, top.values


def activate(
    subgraph: Subgraph,
    prompt_x: torch.Tensor,
    config: PlannerConfig,
    expert_x: torch.Tensor | None = None,
) -> HeteroData:
    """The activated graph for one prompt (``expert_x`` replaces the experts' features)."""
    if subgraph.num_experts == 0:
        raise PlannerError("no experts to plan over: select at least one expert")
    unknown = sorted(set(subgraph.expert_kinds) - set(KINDS))
    if unknown:
        raise PlannerError(f"expert kinds {unknown} are unknown: expected 'ckpt' or 'peft'")
    expert_x = subgraph.expert_x if expert_x is None else expert_x
    prompt_x = prompt_x.float().reshape(-1)
    dims = {expert_x.shape[1], subgraph.ref_x.shape[1], prompt_x.shape[0]}
    if dims != {config.feature_dim}:
        raise PlannerError(
            f"node features have {sorted(dims)} dims, the planner expects {config.feature_dim}: "
            "embed prompts with the model the graph uses (see `diffgraph graph stats`)"
        )
    n_e = subgraph.num_experts
    data = HeteroData()
    data["expert"].x = expert_x.float()
    data["expert"].kind = torch.tensor([KINDS.index(k) for k in subgraph.expert_kinds])
    data["ref"].x = subgraph.ref_x.float()
    data["prompt"].x = prompt_x[None]
    data.expert_ids = list(subgraph.expert_ids)

    columns = metric_columns(subgraph.metric_names, config.metric_names)
    _set(data, CALIBRATED, subgraph.edge_index, _calibration_features(subgraph, columns, config))
    linked, sims = prompt_links(subgraph.ref_x.float(), prompt_x, config.prompt_top_m)
    _set(data, NEAR, torch.stack([torch.zeros_like(linked), linked]), sims[:, None])
    experts = torch.arange(n_e)
    _set(data, MATCHES, torch.stack([torch.zeros_like(experts), experts]), torch.zeros(n_e, 1))
    return data


def _set(data: HeteroData, relation, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> None:
    data[relation].edge_index = edge_index
    data[relation].edge_attr = edge_attr
    data[reverse(relation)].edge_index = edge_index.flip(0)
    data[reverse(relation)].edge_attr = edge_attr


def _calibration_features(
    subgraph: Subgraph, columns: list[int], config: PlannerConfig
) -> torch.Tensor:
    """Standardised scores, measured flags and a constant 1 per calibration edge."""
    num_edges, num_metrics = subgraph.edge_index.shape[1], len(config.metrics)
    features = torch.zeros(num_edges, calibration_dim(num_metrics))
    features[:, -1] = 1.0
    if columns:
        mean = torch.tensor([s.mean for s in config.metrics])
        std = torch.tensor([s.std for s in config.metrics])
        mask = subgraph.edge_mask[:, columns].float()
        features[:, :num_metrics] = (subgraph.edge_attr[:, columns].float() - mean) / std * mask
        features[:, num_metrics : 2 * num_metrics] = mask
    return features
