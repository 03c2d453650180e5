"""Activated subgraphs: selected experts, their reference prompts and calibration edges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from graph.errors import UnknownExpertError
from graph.store import GraphArrays

if TYPE_CHECKING:
    import torch


@dataclass
class Subgraph:
    """A bipartite expert × reference-prompt subgraph as tensors.

    ``edge_index[0]`` indexes ``expert_ids`` (local), ``edge_index[1]`` indexes ``ref_ids``
    (local). ``edge_attr`` holds the calibration scores in ``metric_names`` order with
    missing values set to 0 and flagged False in ``edge_mask``.
    """

    expert_ids: list[str]
    expert_kinds: list[str]
    ref_ids: list[str]
    expert_x: torch.Tensor
    ref_x: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    edge_mask: torch.Tensor
    metric_names: list[str]

    @property
    def num_experts(self) -> int:
        return len(self.expert_ids)

    def to_hetero_data(self):
        """The same subgraph as a torch-geometric ``HeteroData``."""
        from torch_geometric.data import HeteroData

        data = HeteroData()
        data["expert"].x = self.expert_x
        data["ref"].x = self.ref_x
        data["expert", "calibrated_on", "ref"].edge_index = self.edge_index
        data["expert", "calibrated_on", "ref"].edge_attr = self.edge_attr
        return data


def extract_subgraph(arrays: GraphArrays, expert_ids: Sequence[str]) -> Subgraph:
    """Experts in the given order, their one-hop reference prompts (store order) and edges."""
    import torch  # here, not at module level: reading the graph must not load torch

    rows = arrays.expert_rows()
    missing = [i for i in expert_ids if i not in rows]
    if missing:
        raise UnknownExpertError(missing[0])
    expert_rows = np.asarray([rows[i] for i in expert_ids], np.int64)
    local = np.full(len(arrays.expert_ids), -1, np.int64)
    local[expert_rows] = np.arange(len(expert_rows))
    keep = local[arrays.edge_index[0]] >= 0 if arrays.edge_index.size else np.zeros(0, bool)
    src = local[arrays.edge_index[0, keep]]
    ref_rows = arrays.edge_index[1, keep]
    unique_refs, dst = np.unique(ref_rows, return_inverse=True)
    attr = arrays.edge_attr[keep]
    mask = np.isfinite(attr)
    return Subgraph(
        expert_ids=list(expert_ids),
        expert_kinds=[str(arrays.expert_kind[r]) for r in expert_rows],
        ref_ids=[arrays.ref_ids[r] for r in unique_refs],
        expert_x=torch.from_numpy(arrays.expert_x[expert_rows].copy()),
        ref_x=torch.from_numpy(arrays.ref_x[unique_refs].copy()),
        edge_index=torch.from_numpy(np.stack([src, dst.reshape(-1)]).astype(np.int64)),
        edge_attr=torch.from_numpy(np.where(mask, attr, 0.0).astype(np.float32)),
        edge_mask=torch.from_numpy(mask),
        metric_names=list(arrays.metric_names),
    )
