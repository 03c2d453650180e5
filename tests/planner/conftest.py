"""Planner fixtures: a synthetic world of real MiniLM embeddings and one trained planner.

Small graphs run faster on one torch thread (the test machine's cores are shared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from graph.prompts import read_prompts

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "planner"
HELD_OUT = "demo-lora-portrait"  # added after training (the paper's 2023 → 2025 setting)
N_REFS = 30
TRAIN_STEPS = 300


@dataclass
class WorldData:
    """Embedded demo experts and DiffusionDB prompts (reference / train / held-out)."""

    expert_ids: list[str]
    expert_kinds: list[str]
    expert_x: torch.Tensor
    ref_x: torch.Tensor
    train: list
    val: list


@pytest.fixture(scope="session")
def world_data(embedder) -> WorldData:
    from planner.envs.synthetic import DEMO_EXPERTS
    from planner.loading import embed_prompts

    experts = json.loads(DEMO_EXPERTS.read_text())["experts"]
    texts = read_prompts(FIXTURES / "diffusiondb_train_sample.jsonl")
    refs = embed_prompts(embedder, texts[:N_REFS])
    return WorldData(
        expert_ids=[e["id"] for e in experts],
        expert_kinds=[e["kind"] for e in experts],
        expert_x=torch.from_numpy(embedder.embed([e["description"] for e in experts])),
        ref_x=torch.stack([r.x for r in refs]),
        train=embed_prompts(embedder, texts[N_REFS:]),
        val=embed_prompts(embedder, read_prompts(FIXTURES / "diffusiondb_val_sample.jsonl")),
    )


@pytest.fixture(scope="session")
def world(world_data):
    """The synthetic world without ``HELD_OUT``."""
    from planner.envs.synthetic import SyntheticWorld

    keep = [i for i, e in enumerate(world_data.expert_ids) if e != HELD_OUT]
    return SyntheticWorld.build(
        [world_data.expert_ids[i] for i in keep],
        [world_data.expert_kinds[i] for i in keep],
        world_data.expert_x[keep],
        world_data.ref_x,
        seed=0,
    )


@pytest.fixture(scope="session")
def trained(world, world_data, tmp_path_factory):
    """A planner trained with the default settings on the synthetic world (seed 0)."""
    from planner.envs.synthetic import SyntheticEnv
    from planner.trainer import Trainer
    from tools.settings import PlannerSettings

    path = tmp_path_factory.mktemp("planner") / "planner.safetensors"
    trainer = Trainer.start(
        SyntheticEnv(world), world_data.train, PlannerSettings(checkpoint_every=100), path
    )
    trainer.run(TRAIN_STEPS)
    return trainer
