"""The VGAE encoder: μ and log σ per node from two edge-aware two-layer graph networks."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch_geometric.nn import Linear, MessagePassing
from torch_geometric.utils import softmax


class RelationalTransformerConv(MessagePassing):
    """``TransformerConv`` (Shi et al. 2021) whose attention softmax runs within each relation.

    Node i attends separately over its neighbours of each edge type r and the per-relation
    results are summed: ``x_i' = W_s x_i + Σ_r Σ_{j∈N_r(i)} α_ij (W_v x_j + W_e e_ij)`` with
    ``α_ij = softmax_{j∈N_r(i)}((W_q x_i)·(W_k x_j + W_e e_ij) / √d)``. Edge features (scores,
    similarities, the relation) shape both the attention and the messages. One softmax over
    all neighbours would let an expert's many calibration edges drown its single message
    from the prompt; one conv per relation (``HeteroConv``) costs six times the passes.
    """

    def __init__(
        self, in_channels: int, out_channels: int, heads: int, edge_dim: int, num_relations: int
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.heads, self.out_channels, self.num_relations = heads, out_channels, num_relations
        width = heads * out_channels
        self.lin_query = Linear(in_channels, width)
        self.lin_key = Linear(in_channels, width)
        self.lin_value = Linear(in_channels, width)
        self.lin_edge = Linear(edge_dim, width, bias=False)
        self.lin_skip = Linear(in_channels, width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for layer in (self.lin_query, self.lin_key, self.lin_value, self.lin_edge, self.lin_skip):
            layer.reset_parameters()

    def forward(self, x, edge_index, edge_attr, edge_type) -> torch.Tensor:
        heads, channels = self.heads, self.out_channels
        out = self.propagate(
            edge_index,
            query=self.lin_query(x).view(-1, heads, channels),
            key=self.lin_key(x).view(-1, heads, channels),
            value=self.lin_value(x).view(-1, heads, channels),
            edge_attr=edge_attr,
            group=edge_index[1] * self.num_relations + edge_type,
            num_groups=x.size(0) * self.num_relations,
        )
        return out.view(-1, heads * channels) + self.lin_skip(x)

    def message(self, query_i, key_j, value_j, edge_attr, group, num_groups) -> torch.Tensor:
        edge = self.lin_edge(edge_attr).view(-1, self.heads, self.out_channels)
        alpha = (query_i * (key_j + edge)).sum(dim=-1) / math.sqrt(self.out_channels)
        alpha = softmax(alpha, group, num_nodes=num_groups)
        return (value_j + edge) * alpha.unsqueeze(-1)


class EdgeGraphNet(nn.Module):
    """Two ``RelationalTransformerConv`` layers with an ELU between them."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        edge_dim: int,
        heads: int,
        num_relations: int,
    ) -> None:
        super().__init__()
        self.conv1 = RelationalTransformerConv(
            in_dim, hidden_dim // heads, heads, edge_dim, num_relations
        )
        self.conv2 = RelationalTransformerConv(hidden_dim, out_dim, 1, edge_dim, num_relations)

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, x, edge_index, edge_attr, edge_type) -> torch.Tensor:
        h = nn.functional.elu(self.conv1(x, edge_index, edge_attr, edge_type))
        return self.conv2(h, edge_index, edge_attr, edge_type)


class DualEncoder(nn.Module):
    """``(μ, log σ)`` per node from two separate graph networks (the VGAE encoder contract).

    In eval mode only μ is computed (inference uses H = μ) and log σ is returned as zeros.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.mu = EdgeGraphNet(*args, **kwargs)
        self.logstd = EdgeGraphNet(*args, **kwargs)

    def reset_parameters(self) -> None:
        self.mu.reset_parameters()
        self.logstd.reset_parameters()

    def forward(self, x, edge_index, edge_attr, edge_type) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.mu(x, edge_index, edge_attr, edge_type)
        if not self.training:
            return mu, torch.zeros_like(mu)
        return mu, self.logstd(x, edge_index, edge_attr, edge_type)
