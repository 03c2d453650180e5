"""AutoLoRA weight embeddings as expert node features (the planner's parameter-based
ablation, paper Table 5).

The embeddings live in the text encoder's space (384-d for MiniLM), so they fit the
planner's ``feature_dim``. Experts without a LoRA embedding (checkpoints, LoRAs without
local weights) get a zero row; the planner's kind one-hot still tells them apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from graph.subgraph import Subgraph
from tools.autolora.retrieval import AutoLoraRetriever


def expert_features(
    experts: Subgraph | Sequence[str], retriever: AutoLoraRetriever
) -> torch.Tensor:
    """``[n, embed_dim]`` float32 weight embeddings of a subgraph's experts (or of ids),
    in that order; zero rows for experts without one."""
    ids = experts.expert_ids if isinstance(experts, Subgraph) else list(experts)
    vectors = retriever.vectors(ids)
    out = torch.zeros(len(ids), retriever.encoder.config.embed_dim)
    for row, expert_id in enumerate(ids):
        if expert_id in vectors:
            out[row] = torch.from_numpy(vectors[expert_id])
    return out


def featurizer(retriever: AutoLoraRetriever) -> Callable[[Subgraph], torch.Tensor]:
    """A ``planner.planners.ExpertFeaturizer`` (subgraph → expert features)."""
    return functools.partial(expert_features, retriever=retriever)
