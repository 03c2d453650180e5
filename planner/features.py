"""The planner's input pipeline after activation: ablations, projections, one flat graph."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import HeteroData

from planner.activation import (
    CALIBRATED,
    MATCHES,
    calibration_dim,
    edge_types,
    reverse,
)
from planner.config import PlannerConfig
from planner.merge import KINDS

NODE_ORDER = ("expert", "ref", "prompt")

NodeDict = dict[str, torch.Tensor]
EdgeDict = dict[tuple[str, str, str], torch.Tensor]
# Expert features that live in the text-embedding space, comparable with the prompt.
TEXT_SPACE = ("description", "learnable")


def flat_expert_ids(data: HeteroData) -> list[str]:
    """Expert ids in node order, for one graph or a batch (a list of lists)."""
    ids = data.expert_ids
    return [i for group in ids for i in group] if ids and isinstance(ids[0], list) else ids


def relation_blocks(num_metrics: int) -> list[tuple[int, int]]:
    """``(start, width)`` of each relation's own block of the encoder's edge features.

    Calibration edges carry their calibration columns, the others ``[similarity, 1]``.
    """
    blocks, start = [], 0
    for relation in edge_types():
        calibrated = relation in (CALIBRATED, reverse(CALIBRATED))
        width = calibration_dim(num_metrics) if calibrated else 2
        blocks.append((start, width))
        start += width
    return blocks


def edge_dim(num_metrics: int) -> int:
    """Width of the encoder's edge features (one block per relation)."""
    start, width = relation_blocks(num_metrics)[-1]
    return start + width


@dataclass
class EncoderInput:
    """The activated graph as one homogeneous graph, nodes in ``NODE_ORDER`` blocks."""

    x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    edge_type: torch.Tensor
    counts: dict[str, int]


class InputFeatures(nn.Module):
    """Node and edge features as the encoder sees them.

    :meth:`typed` applies the config's ablations (see :class:`planner.config.PlannerConfig`)
    to the expert features and to the score columns of the calibration edges, appends the
    kind one-hot to the expert features, and fills the prompt → expert similarity from the
    features that remain (0 when they are not in the prompt's embedding space: ``zero``,
    ``parameters``). :meth:`forward` then projects each node type to ``input_dim`` with its
    own linear map and flattens the typed graph into one: each relation's edge features
    sit in its own block of columns (:func:`relation_blocks`), so every relation has its
    own edge weights, and ``edge_type`` indexes :func:`planner.activation.edge_types`.
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.expert_mode = config.expert_features
        self.edge_mode = config.edge_features
        self.score_width = 2 * len(config.metrics)
        self.num_metrics = len(config.metrics)
        self.edge_width = edge_dim(self.num_metrics)
        self.vocab = {expert_id: row + 1 for row, expert_id in enumerate(config.expert_vocab)}
        self.expert_table = (
            nn.Embedding(len(self.vocab) + 1, config.feature_dim)
            if self.expert_mode == "learnable"
            else None
        )
        self.edge_value = (
            nn.Parameter(torch.zeros(self.score_width)) if self.edge_mode == "learnable" else None
        )
        in_dims = {
            "expert": config.feature_dim + len(KINDS),
            "ref": config.feature_dim,
            "prompt": config.feature_dim,
        }
        self.project = nn.ModuleDict(
            {node: nn.Linear(dim, config.input_dim) for node, dim in in_dims.items()}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in self.project.values():
            layer.reset_parameters()
        if self.expert_table is not None:
            nn.init.normal_(self.expert_table.weight, std=0.05)
        if self.edge_value is not None:
            nn.init.normal_(self.edge_value, std=0.1)

    def forward(self, data: HeteroData) -> EncoderInput:
        x, edge_attr = self.typed(data)
        counts = {node: x[node].shape[0] for node in NODE_ORDER}
        offsets = dict(
            zip(NODE_ORDER, [0, counts["expert"], counts["expert"] + counts["ref"]], strict=True)
        )
        indices, attrs, types = [], [], []
        blocks = relation_blocks(self.num_metrics)
        for index, relation in enumerate(edge_types()):
            src, _, dst = relation
            edges = data[relation].edge_index
            indices.append(edges + torch.tensor([[offsets[src]], [offsets[dst]]]))
            values = edge_attr[relation]
            if relation not in (CALIBRATED, reverse(CALIBRATED)):  # [similarity, 1]
                values = torch.cat([values, torch.ones_like(values)], dim=1)
            start, width = blocks[index]
            features = torch.zeros(edges.shape[1], self.edge_width)
            features[:, start : start + width] = values
            attrs.append(features)
            types.append(torch.full((edges.shape[1],), index))
        return EncoderInput(
            x=torch.cat([self.project[node](x[node]) for node in NODE_ORDER]),
            edge_index=torch.cat(indices, dim=1),
            edge_attr=torch.cat(attrs),
            edge_type=torch.cat(types),
            counts=counts,
        )

    def typed(self, data: HeteroData) -> tuple[NodeDict, EdgeDict]:
        """Ablated features per node type and edge type (before projection)."""
        expert_x = self.expert_features(data)
        x = {
            "expert": torch.cat(
                [expert_x, nn.functional.one_hot(data["expert"].kind, len(KINDS))], dim=1
            ),
            "ref": data["ref"].x,
            "prompt": data["prompt"].x,
        }
        edge_attr = {relation: data[relation].edge_attr for relation in data.edge_types}
        scores = self.calibration_features(edge_attr[CALIBRATED])
        edge_attr[CALIBRATED] = edge_attr[reverse(CALIBRATED)] = scores
        match = self.match_similarity(data["prompt"].x, expert_x, data[MATCHES].edge_index)
        edge_attr[MATCHES] = edge_attr[reverse(MATCHES)] = match
        return x, edge_attr

    def expert_features(self, data: HeteroData) -> torch.Tensor:
        x = data["expert"].x
        if self.expert_mode == "zero":
            return torch.zeros_like(x)
        if self.expert_mode == "learnable":
            rows = torch.tensor([self.vocab.get(i, 0) for i in flat_expert_ids(data)])
            return self.expert_table(rows)
        return x

    def calibration_features(self, edge_attr: torch.Tensor) -> torch.Tensor:
        if self.edge_mode == "calibration" or not self.score_width:
            return edge_attr
        rows = len(edge_attr)
        if self.edge_mode == "none":
            scores = torch.zeros(rows, self.score_width)
        else:
            scores = self.edge_value.expand(rows, -1)
        return torch.cat([scores, edge_attr[:, self.score_width :]], dim=1)

    def match_similarity(
        self, prompt_x: torch.Tensor, expert_x: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        if self.expert_mode not in TEXT_SPACE:
            return torch.zeros(edge_index.shape[1], 1)
        sims = nn.functional.cosine_similarity(prompt_x[edge_index[0]], expert_x[edge_index[1]])
        return sims[:, None]
