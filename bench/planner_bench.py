"""Merging Planner benchmark: planning latency, training speed, and what training reaches.

1. Planning latency per prompt on the CPU (one thread) for 4, 16 and 64 experts, each
   calibrated on 100 reference prompts (random unit features, the MiniLM width), against
   the equal-weights planner measured in the same run.
2. REINFORCE training on the synthetic world (real MiniLM embeddings of the demo experts
   and of the DiffusionDB prompts in tests/fixtures/planner): steps per second and the
   share of the gap from equal weights to the optimum closed on held-out prompts, for the
   default settings, the issue's lr 1e-2, the paper's running-mean baseline, and each
   ablation switch.

Run: ``.venv/bin/python bench/planner_bench.py``. Synthetic rewards only: demo figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evals.benchmarks_md import table, write_section  # noqa: E402
from graph.prompts import read_prompts  # noqa: E402
from planner.activation import fit_metric_scales  # noqa: E402
from planner.config import PlannerConfig  # noqa: E402
from planner.envs.synthetic import DEMO_EXPERTS, SyntheticEnv, SyntheticWorld  # noqa: E402
from planner.evaluation import evaluate  # noqa: E402
from planner.loading import embed_prompts  # noqa: E402
from planner.model import MergingPlanner  # noqa: E402
from planner.planners import EqualPlanner, PlanRequest, RandomPlanner, VGAEPlanner  # noqa: E402
from planner.trainer import Trainer  # noqa: E402
from tools.settings import PlannerSettings  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "planner"
DIM, REFS, STEPS, N_REFS = 384, 100, 300, 30
RUNS = [
    ("default (leave-one-out b, lr 1e-3)", {}, {}),
    ("lr 1e-2 (the issue's default)", {"lr": 1e-2}, {}),
    (
        "running-mean b, 1 sample (paper Eq. 4)",
        {"baseline": "running_mean", "samples_per_prompt": 1},
        {},
    ),
    ("w/o registration (zero expert features)", {}, {"expert_features": "zero"}),
    ("learnable expert features", {}, {"expert_features": "learnable"}),
    ("w/o calibration (no edge features)", {}, {"edge_features": "none"}),
    ("learnable edge features", {}, {"edge_features": "learnable"}),
]


def unit_rows(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=1)


def latency_ms(planner, request: PlanRequest, repeats: int = 50) -> float:
    for _ in range(5):
        planner.plan(request)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        planner.plan(request)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency_table() -> str:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    rows = []
    for n in (4, 16, 64):
        kinds = ["ckpt"] * (n // 4) + ["peft"] * (n - n // 4)
        ids = [f"e{i}" for i in range(n)]
        world = SyntheticWorld.build(
            ids, kinds, unit_rows(n, generator), unit_rows(REFS, generator)
        )
        env = SyntheticEnv(world)
        subgraph = env.subgraph(ids)
        config = PlannerConfig(metrics=fit_metric_scales(env.subgraph(ids)))
        request = PlanRequest("bench", unit_rows(1, generator)[0], subgraph)
        learned = latency_ms(VGAEPlanner(MergingPlanner(config)), request)
        equal = latency_ms(EqualPlanner(), request)
        rows.append(
            [
                n,
                REFS,
                subgraph.edge_index.shape[1],
                f"{learned:.2f}",
                f"{equal:.3f}",
                f"{learned / equal:.0f}x",
            ]
        )
    columns = [
        "experts",
        "ref prompts",
        "calibration edges",
        "VGAE plan (ms, median)",
        "equal weights (ms)",
        "ratio",
    ]
    return table(columns, rows)


def training_table() -> str:
    from graph.embedding import Embedder

    embedder = Embedder()
    experts = json.loads(DEMO_EXPERTS.read_text())["experts"]
    texts = read_prompts(FIXTURES / "diffusiondb_train_sample.jsonl")
    refs = embed_prompts(embedder, texts[:N_REFS])
    world = SyntheticWorld.build(
        [e["id"] for e in experts],
        [e["kind"] for e in experts],
        torch.from_numpy(embedder.embed([e["description"] for e in experts])),
        torch.stack([r.x for r in refs]),
    )
    env = SyntheticEnv(world)
    train = embed_prompts(embedder, texts[N_REFS:])
    val = embed_prompts(embedder, read_prompts(FIXTURES / "diffusiondb_val_sample.jsonl"))
    rows = []
    for name, planner in (("equal weights", EqualPlanner()), ("random", RandomPlanner(0))):
        score = evaluate(planner, env, val)
        rows.append([name, "-", f"{score.reward:.4f}", f"{score.gain:.2f}"])
    with tempfile.TemporaryDirectory() as folder:
        for i, (name, settings, config) in enumerate(RUNS):
            trainer = Trainer.start(
                env,
                train,
                PlannerSettings(checkpoint_every=10_000, **settings),
                Path(folder) / f"run{i}.safetensors",
                PlannerConfig(**config),
            )
            start = time.perf_counter()
            trainer.run(STEPS)
            speed = STEPS / (time.perf_counter() - start)
            score = evaluate(VGAEPlanner(trainer.model, synthetic=True), env, val)
            rows.append([name, f"{speed:.1f}", f"{score.reward:.4f}", f"{score.gain:.2f}"])
            print(name, rows[-1], flush=True)
    optimum = evaluate(EqualPlanner(), env, val).optimum
    body = table(["planner", "train steps/s", "held-out reward", "gap closed"], rows)
    return (
        f"{body}\n\nOptimum reward {optimum:.4f}. {STEPS} steps, batch 8 prompts x 4 samples "
        f"(1 for the running-mean row), {len(train)} training prompts, {len(val)} held-out; "
        "'gap closed' = (reward - equal) / (optimum - equal)."
    )


def main() -> None:
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    latency = latency_table()
    print(latency, flush=True)
    training = training_table()
    body = (
        "Planning latency per prompt (activation + VGAE + merge weights), one CPU thread, "
        "untrained weights (latency does not depend on training):\n\n"
        f"{latency}\n\n"
        "REINFORCE on the synthetic world (demo reward, known optimum), evaluated on held-out "
        "DiffusionDB prompts:\n\n"
        f"{training}\n\nLoad average at start: {load:.1f} (the machine is shared)."
    )
    write_section(
        "planner",
        "Merging Planner (planner/)",
        ".venv/bin/python bench/planner_bench.py",
        body,
    )


if __name__ == "__main__":
    main()
