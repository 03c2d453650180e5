"""A tiny base pipeline, tiny scorers and tiny experts registered in a graph."""

from __future__ import annotations

import pytest
import torch

from graph.records import BaseFamily, Expert, ExpertKind, WeightFile

torch.set_num_threads(1)

PROMPTS = ["a red cat", "a castle at night", "portrait of a robot"]


@pytest.fixture(scope="session")
def worker_spec(tiny_sd15_files, tmp_path_factory):
    from tools.calibration.tasks import SamplingSpec
    from tools.calibration.worker import WorkerSpec
    from tools.settings import ScorerSettings
    from tools.tiny.clip import save_tiny_scorer_weights

    weights = save_tiny_scorer_weights(tmp_path_factory.mktemp("scorers"))
    return WorkerSpec(
        base_model=tiny_sd15_files.folder,
        device="cpu",
        scorers=ScorerSettings(**weights).model_dump(),
        sampling=SamplingSpec(images_per_prompt=2, steps=2, size=64, seed=5),
        max_batch=4,
        threads=1,
    )


@pytest.fixture(scope="session")
def local_worker(worker_spec):
    from tools.calibration.worker import Worker

    return Worker(worker_spec)


@pytest.fixture(scope="session")
def expert_files(tiny_sd15, tmp_path_factory):
    from tools.tiny import make_tiny_checkpoint, make_tiny_lora

    folder = tmp_path_factory.mktemp("experts")
    broken = folder / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    return {
        "ckpt": make_tiny_checkpoint(tiny_sd15, folder / "ckpt.safetensors", seed=11),
        "lora": make_tiny_lora(
            tiny_sd15, folder / "lora.safetensors", seed=12, format="kohya", strength=2.0
        ),
        "broken": broken,
    }


def make_expert(expert_id: str, kind: ExpertKind, path, **extra) -> Expert:
    return Expert(
        id=expert_id,
        kind=kind,
        base=BaseFamily.SD15,
        name=expert_id,
        description=f"demo expert {expert_id}",
        file=WeightFile(path=str(path)) if path else None,
        demo=True,
        **extra,
    )


@pytest.fixture
def experts(expert_files):
    return [
        make_expert("demo-ckpt", ExpertKind.CKPT, expert_files["ckpt"]),
        make_expert("demo-lora", ExpertKind.PEFT, expert_files["lora"], trigger_words=["zzstyle"]),
    ]


@pytest.fixture
def graph(graph_config, embedder, experts):
    from graph.universal import UniversalGraph

    with UniversalGraph(graph_config, embedder) as graph:
        vectors = embedder.embed([e.description for e in experts])
        graph.add_experts(experts, vectors)
        yield graph
