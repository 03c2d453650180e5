"""Small builders for graph tests (random unit embeddings, hand-made records)."""

from __future__ import annotations

import numpy as np

from graph.records import BaseFamily, Expert, ExpertKind

DIM = 8


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def expert(expert_id: str, kind: str = "peft", base: str = "sd15", **extra) -> Expert:
    return Expert(
        id=expert_id,
        kind=ExpertKind(kind),
        base=BaseFamily(base),
        name=extra.pop("name", expert_id),
        description=extra.pop("description", f"skill of {expert_id}"),
        **extra,
    )
