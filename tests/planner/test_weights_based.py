"""Parameter features from real expert files and the real (generate + score) environment.

Both run the tiny SD 1.5-architecture backends: the images and scores mean nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph.records import BaseFamily, Calibration, Expert, ExpertKind, WeightFile
from planner.envs.base import TrainPrompt, fixed_selector
from planner.param_features import (
    ParameterFeaturizer,
    adapter_tensors,
    checkpoint_tensors,
    count_sketch,
)
from tools.settings import PlannerSettings


@pytest.fixture(scope="module")
def expert_files(tiny_sd15, tmp_path_factory):
    from tools.tiny import make_tiny_checkpoint, make_tiny_lora

    folder = tmp_path_factory.mktemp("experts")
    return {
        "lora-kohya": make_tiny_lora(tiny_sd15, folder / "a.safetensors", seed=1, format="kohya"),
        "lora-diffusers": make_tiny_lora(tiny_sd15, folder / "b.safetensors", seed=1),
        "lora-other": make_tiny_lora(tiny_sd15, folder / "c.safetensors", seed=2),
        "ckpt-ldm": make_tiny_checkpoint(tiny_sd15, folder / "k.safetensors", seed=3),
        "ckpt-diffusers": make_tiny_checkpoint(
            tiny_sd15, folder / "k-folder", seed=3, format="diffusers"
        ),
    }


def test_count_sketch_is_a_fixed_unit_projection():
    x = torch.arange(12.0).reshape(3, 4)
    first = count_sketch([("w", x)], 16, seed=0)
    assert first.shape == (16,) and float(first.norm()) == pytest.approx(1.0)
    torch.testing.assert_close(count_sketch([("w", x)], 16, seed=0), first)
    torch.testing.assert_close(count_sketch([("w", 2 * x)], 16, seed=0), first)
    assert not torch.allclose(count_sketch([("w", x)], 16, seed=1), first)


def test_features_depend_on_the_weights_not_the_file_format(expert_files):
    kohya, diffusers, other = (
        count_sketch(adapter_tensors(expert_files[k]), 384)
        for k in ("lora-kohya", "lora-diffusers", "lora-other")
    )
    torch.testing.assert_close(kohya, diffusers)
    assert abs(float(kohya @ other)) < 0.5
    ldm, folder = (
        count_sketch(checkpoint_tensors(expert_files[k]), 384)
        for k in ("ckpt-ldm", "ckpt-diffusers")
    )
    torch.testing.assert_close(ldm, folder)


def _expert(expert_id: str, kind: str, path) -> Expert:
    return Expert(
        id=expert_id,
        kind=ExpertKind(kind),
        base=BaseFamily.SD15,
        name=expert_id,
        description=f"tiny demo expert {expert_id}",
        file=WeightFile(path=str(path)) if path else None,
        demo=True,
    )


def test_featurizer_reads_each_expert_once(expert_files):
    from planner.errors import PlannerError
    from tests.planner.helpers import toy_subgraph

    records = {
        "c0": _expert("c0", "ckpt", expert_files["ckpt-ldm"]),
        "l0": _expert("l0", "peft", expert_files["lora-kohya"]),
        "l1": _expert("l1", "peft", expert_files["lora-other"]),
    }
    calls = []

    def lookup(ids):
        calls.append(list(ids))
        return [records[i] for i in ids]

    featurizer = ParameterFeaturizer(lookup, dim=8)
    features = featurizer(toy_subgraph())
    assert features.shape == (3, 8)
    torch.testing.assert_close(featurizer(toy_subgraph()), features)  # cached
    torch.testing.assert_close(
        features[1], count_sketch(adapter_tensors(expert_files["lora-kohya"]), 8)
    )
    records["l1"] = _expert("l1", "peft", None)
    featurizer = ParameterFeaturizer(lookup, dim=8)
    with pytest.raises(PlannerError, match="no downloaded weights"):
        featurizer(toy_subgraph())


def test_real_env_generates_scores_and_trains(
    tiny_sd15_files, expert_files, embedder, graph_config, tmp_path
):
    from graph.universal import UniversalGraph
    from planner.envs.real import RealEnv
    from planner.trainer import Trainer
    from tools.generation.generator import Generator
    from tools.scorers.load import load_scorers
    from tools.scorers.reward import combine
    from tools.settings import ScorerSettings
    from tools.tiny import save_tiny_scorer_weights

    experts = [
        _expert("c0", "ckpt", expert_files["ckpt-ldm"]),
        _expert("l0", "peft", expert_files["lora-kohya"]),
        _expert("l1", "peft", expert_files["lora-other"]),
    ]
    rng = np.random.default_rng(0)
    with UniversalGraph(graph_config, embedder) as graph:
        vectors = rng.standard_normal((3, 384)).astype(np.float32)
        graph.add_experts(experts, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        refs = graph.add_reference_prompts(["a red car", "a portrait of an old man"])
        graph.set_calibrations(
            Calibration(expert_id=e.id, ref_id=r.id, scores={"clip_score": 20.0 + i + j})
            for i, e in enumerate(experts)
            for j, r in enumerate(refs)
        )
        scoring = ScorerSettings(**save_tiny_scorer_weights(tmp_path / "scorers"))
        env = RealEnv(
            graph,
            Generator.from_path(tiny_sd15_files.folder),
            load_scorers(scoring),
            lambda scores: combine(scores, scoring.reward_weights),
            fixed_selector(["c0", "l0", "l1"]),
            {"steps": 2, "width": 64, "height": 64},
        )
        assert env.demo and not env.synthetic
        assert sorted(env.expert_ids) == ["c0", "l0", "l1"]
        prompt = TrainPrompt("a blue bird", torch.from_numpy(embedder.embed_one("a blue bird")))
        subgraph = env.subgraph(env.candidates(prompt))
        samples = torch.tensor([[0.9, 0.1, 0.8], [0.1, 0.9, 0.2]])
        rewards = env.rewards([prompt], [subgraph], [samples])
        assert rewards.shape == (2, 1) and bool(torch.isfinite(rewards).all())
        again = env.rewards([prompt], [subgraph], [samples])
        torch.testing.assert_close(again, rewards)  # seeded generation
        settings = PlannerSettings(batch_size=1, samples_per_prompt=2, checkpoint_every=1)
        trainer = Trainer.start(env, [prompt], settings, tmp_path / "real.safetensors")
        state = trainer.run(1)
    assert state.step == 1 and state.env == "real" and state.demo and not state.synthetic
