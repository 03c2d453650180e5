"""Calibration benchmark: images/s and s/expert in-process vs Ray (2 workers); expert switch
(apply + restore in place) vs reloading the pipeline. Tiny SD 1.5 pipeline on CPU by default;
``--full`` measures a full-size SD 1.5 architecture (random weights) at 512x512 (for a GPU).

Run: .venv/bin/python bench/calibration_bench.py [--experts 4] [--prompts 4] [--full]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from evals.benchmarks_md import table, write_section
from graph.config import GraphConfig
from graph.records import BaseFamily, Expert, ExpertKind, WeightFile
from graph.universal import UniversalGraph
from tools.calibration.calibrate import calibrate
from tools.calibration.executor import LocalExecutor, RayExecutor
from tools.calibration.tasks import SamplingSpec
from tools.calibration.worker import WorkerSpec
from tools.generation.generator import Generator
from tools.generation.loading import load_pipeline
from tools.settings import ScorerSettings
from tools.tiny import build_tiny_sd15, make_tiny_checkpoint, make_tiny_lora, save_tiny_sd15
from tools.tiny.clip import save_tiny_scorer_weights

PROMPTS = [
    "a castle on a mountain at sunset, oil painting",
    "portrait of a robot, cinematic lighting",
    "a red cat in a forest, watercolor",
    "cyberpunk city street at night, 8k",
    "a dragon over the sea, fantasy art",
    "a flower in the snow, macro photo",
]


def make_experts(pipe, folder: Path, count: int) -> list[Expert]:
    experts = []
    for i in range(count):
        if i % 2 == 0:
            path, kind = make_tiny_checkpoint(pipe, folder / f"ckpt{i}.safetensors", seed=i), "ckpt"
        else:
            path, kind = make_tiny_lora(pipe, folder / f"lora{i}.safetensors", seed=i), "peft"
        experts.append(
            Expert(
                id=f"demo-bench-{i}",
                kind=ExpertKind(kind),
                base=BaseFamily.SD15,
                name=f"bench expert {i}",
                file=WeightFile(path=str(path)),
                demo=True,
            )
        )
    return experts


def run_calibration(root: Path, experts, prompts, executor, embedder) -> tuple[float, int]:
    with UniversalGraph(GraphConfig(data_dir=root), embedder) as graph:
        graph.add_experts(experts, embedder.embed([e.name for e in experts]))
        start = time.perf_counter()
        report = calibrate(graph, experts, executor, BaseFamily.SD15, prompts)
        seconds = time.perf_counter() - start
    if report.failures:
        raise RuntimeError(f"calibration failed: {report.failures}")
    return seconds, report.images


def switch_costs(folder: Path, experts, repeats: int) -> tuple[float, float, float]:
    """Median seconds: apply+restore of a checkpoint expert, of a LoRA expert, and a reload."""
    from tools.calibration.tasks import ExpertTask

    generator = Generator.from_path(folder)
    times: dict[str, list[float]] = {"ckpt": [], "peft": [], "reload": []}
    for expert in experts[:2]:
        plan = ExpertTask.for_expert(expert, [("r", "x")], BaseFamily.SD15).merge_plan()
        for _ in range(repeats):
            start = time.perf_counter()
            with generator.merged(plan):
                pass
            times[expert.kind.value].append(time.perf_counter() - start)
    for _ in range(repeats):
        start = time.perf_counter()
        load_pipeline(folder)
        times["reload"].append(time.perf_counter() - start)
    return tuple(statistics.median(times[k]) for k in ("ckpt", "peft", "reload"))


def full_size_images_per_second(steps: int, batch: int) -> tuple[str, float]:
    """Images/s of a full-size SD 1.5 architecture (random weights) at 512x512."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from tools.tiny.sd15 import SCHEDULER_CONFIG
    from tools.tiny.tokenizer import build_tiny_tokenizer
    from tools.weights.families import CLIP_L, SD15_UNET, VAE

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = StableDiffusionPipeline(
        unet=UNet2DConditionModel(**SD15_UNET),
        vae=AutoencoderKL(**VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
        tokenizer=build_tiny_tokenizer(),
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    run = lambda: pipe(  # noqa: E731
        ["a castle at sunset"] * batch, num_inference_steps=steps, height=512, width=512
    )
    run()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    return f"{device} {str(dtype).removeprefix('torch.')}", batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--images", type=int, default=2, help="images per prompt")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also full-size SD 1.5 at 512x512")
    args = parser.parse_args()
    from graph.embedding import Embedder

    load_average = os.getloadavg()[0]

    embedder = Embedder()
    prompts = PROMPTS[: args.prompts]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipe = build_tiny_sd15(0)
        files = save_tiny_sd15(pipe, root / "base")
        experts = make_experts(pipe, root / "experts", args.experts)
        sampling = SamplingSpec(images_per_prompt=args.images, steps=args.steps, size=64)
        spec = WorkerSpec(
            base_model=files.folder,
            device="cpu",
            scorers=ScorerSettings(**save_tiny_scorer_weights(root / "scorers")).model_dump(),
            sampling=sampling,
            threads=1,
        )
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            local = LocalExecutor(spec.model_copy(update={"threads": threads}))
            local.worker  # noqa: B018 - load before timing
            load = time.perf_counter() - start
            root_t = root / f"g-local-{threads}"
            seconds, images = run_calibration(root_t, experts, prompts, local, embedder)
            rows.append(["in-process", f"1 ({threads} torch threads)", load, seconds, images])
            local.close()

        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        remote = RayExecutor(spec, workers=2)
        remote.demo  # noqa: B018 - waits for the first actor's load
        ray_load = time.perf_counter() - start
        seconds, images = run_calibration(root / "g-ray", experts, prompts, remote, embedder)
        rows.append(["Ray", "2 actors (1 torch thread each)", ray_load, seconds, images])
        remote.close()
        ray.shutdown()
        ckpt, lora, reload = switch_costs(files.folder, experts, args.repeats)

    body_rows = [
        [name, workers, f"{load:.1f}", f"{sec:.2f}", f"{n / sec:.2f}", f"{sec / args.experts:.2f}"]
        for name, workers, load, sec, n in rows
    ]
    best_local = min(row[3] for row in rows if row[0] == "in-process")
    body = (
        f"Tiny SD 1.5 pipeline (tools.tiny), {args.experts} experts (half checkpoints, half "
        f"LoRAs) x {len(prompts)} reference prompts x {args.images} images, {args.steps} steps, "
        "64x64, scored with tiny clip_score + aesthetic. Demo weights: the figures measure the "
        "machinery, not image quality. Load average at start: "
        f"{load_average:.1f} (other processes share the cores).\n\n"
        + table(
            ["executor", "workers", "load s", "calibration s", "images/s", "s/expert"], body_rows
        )
        + f"\n\nRay (2 workers) vs best in-process: {best_local / rows[-1][3]:.2f}x faster.\n\n"
        + table(
            ["expert switch", "median s"],
            [
                ["apply + restore checkpoint expert", f"{ckpt:.4f}"],
                ["apply + restore LoRA expert", f"{lora:.4f}"],
                ["reload pipeline from folder", f"{reload:.4f}"],
            ],
        )
        + f"\n\nReload / switch: {reload / ckpt:.1f}x (checkpoint), {reload / lora:.1f}x (LoRA)."
    )
    if args.full:
        device, per_second = full_size_images_per_second(steps=20, batch=4)
        body += (
            f"\n\nFull-size SD 1.5 architecture (random weights), 512x512, 20 steps, batch 4 on "
            f"{device}: {per_second:.2f} images/s."
        )
    write_section(
        "calibration",
        "Calibration: executors and expert switching",
        "python bench/calibration_bench.py" + (" --full" if args.full else ""),
        body,
    )
    print(body)


if __name__ == "__main__":
    main()
