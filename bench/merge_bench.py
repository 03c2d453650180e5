"""Merge benchmark: four rank-32 LoRAs into a full-size SD 1.5 UNet (random weights from the
real config) with our in-place merge vs diffusers ``load_lora_weights`` + ``set_adapters`` +
``fuse_lora`` vs PEFT ``add_weighted_adapter(combination_type="cat")``; and a streamed merge
of three SD 1.5-sized single-file checkpoints vs loading them whole.

Every variant runs in its own subprocess, so its peak RSS (``VmHWM``) is its own.
The LoRA variants also save a few merged weights, compared against ours.

Run: .venv/bin/python bench/merge_bench.py [--workdir DIR] [--skip-checkpoints] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from graph.records import BaseFamily

RANK = 32
COEFFICIENTS = (0.8, 0.6, 0.5, 0.3)  # raw, as A1111 <lora:x:0.8>
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")
SAMPLES = (
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "mid_block.attentions.0.proj_in",
    "up_blocks.3.attentions.2.transformer_blocks.0.ff.net.2",
)
CHECKPOINT_COEFFICIENTS = (0.7, 0.3, 0.1)


# ----------------------------------------------------------------------------- builders


def random_model(kind: str, config: dict, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """A full-size model on CPU, every tensor a seeded window of one random pool."""
    from tools.weights.families import build_component

    model = build_component(kind, config).to(dtype).to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    largest = max(p.numel() for p in model.parameters())
    pool = torch.randn(largest + (1 << 20), generator=generator).mul_(0.02).to(dtype)
    with torch.no_grad():
        for param in model.parameters():
            start = int(torch.randint(0, 1 << 20, (), generator=generator))
            param.view(-1).copy_(pool[start : start + param.numel()])
    return model.eval()


def sd15_unet() -> torch.nn.Module:
    from tools.weights.families import FAMILY_COMPONENTS

    return random_model(*FAMILY_COMPONENTS[BaseFamily.SD15]["unet"], torch.float32, seed=0)


def make_loras(folder: Path) -> list[Path]:
    """Four rank-32 diffusers-format LoRAs on the attention / projection / FF layers."""
    from tools.weights.adapter import Adapter, AdapterModule
    from tools.weights.families import module_shapes
    from tools.weights.write import save_adapter

    shapes = {
        name: shape
        for name, shape in module_shapes(BaseFamily.SD15).items()
        if name.startswith("unet.") and name.endswith(TARGETS) and "attentions" in name
    }
    paths = []
    for index in range(len(COEFFICIENTS)):
        generator = torch.Generator().manual_seed(100 + index)
        modules = {}
        for name, shape in shapes.items():
            tail = (1,) * (len(shape) - 2)
            up = torch.randn(shape[0], RANK, *tail, generator=generator) * 0.01
            down = torch.randn(RANK, shape[1], *tail, generator=generator) * 0.01
            modules[name] = AdapterModule("lora", {"up": up, "down": down}, alpha=float(RANK) / 2)
        paths.append(
            save_adapter(
                Adapter("diffusers-lora", BaseFamily.SD15, modules),
                folder / f"lora{index}.safetensors",
                format="diffusers",
            )
        )
    return paths


def make_checkpoints(folder: Path, count: int) -> list[Path]:
    """SD 1.5-sized single-file float16 checkpoints (real LDM keys), written streamed."""
    from tools.weights.families import parameter_shapes
    from tools.weights.files import StreamingWriter
    from tools.weights.keymap import family_links

    shapes = parameter_shapes(BaseFamily.SD15)
    layout = {}
    for link in family_links(BaseFamily.SD15):
        shape = shapes[link.diffusers]
        layout[link.ldm] = (torch.float16, (*shape, 1, 1) if link.op == "conv1x1" else shape)
    paths = []
    for index in range(count):
        generator = torch.Generator().manual_seed(200 + index)
        pool = torch.randn(40_000_000, generator=generator).mul_(0.02).half()
        path = folder / f"ckpt{index}.safetensors"
        with StreamingWriter(path, layout) as writer:
            for key, (_, shape) in layout.items():
                numel = torch.Size(shape).numel()
                start = int(torch.randint(0, 1 << 20, (), generator=generator))
                writer.write(key, pool[start : start + numel].reshape(shape))
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- variants


def variant_ours(folder: Path, backup: str) -> dict:
    from tools.weights.apply import apply_merge
    from tools.weights.plan import MergePlan, WeightedExpert

    unet = sd15_unet()
    loras = sorted(folder.glob("lora*.safetensors"))
    plan = MergePlan(
        loras=[
            WeightedExpert(path=p, coefficient=c) for p, c in zip(loras, COEFFICIENTS, strict=True)
        ],
        normalize="raw",
    )
    rss_before = _rss_now()
    start = time.perf_counter()
    merged = apply_merge({"unet": unet}, plan, backup=backup, backup_dir=folder)
    seconds = time.perf_counter() - start
    _save_samples(unet, folder / f"samples-ours-{backup}.safetensors")
    restore = None
    if backup != "none":
        start = time.perf_counter()
        merged.restore()
        restore = time.perf_counter() - start
    return {"seconds": seconds, "restore_seconds": restore, "rss_before": rss_before}


def variant_diffusers(folder: Path) -> dict:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from tools.tiny.sd15 import build_tiny_sd15

    tiny = build_tiny_sd15()  # text encoder / VAE / tokenizer only fill the pipeline's slots
    pipe = StableDiffusionPipeline(
        unet=sd15_unet(),
        vae=tiny.vae,
        text_encoder=tiny.text_encoder,
        tokenizer=tiny.tokenizer,
        scheduler=DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    loras = sorted(folder.glob("lora*.safetensors"))
    rss_before = _rss_now()
    start = time.perf_counter()
    names = []
    for index, path in enumerate(loras):
        pipe.load_lora_weights(str(folder), weight_name=path.name, adapter_name=f"l{index}")
        names.append(f"l{index}")
    pipe.set_adapters(names, adapter_weights=list(COEFFICIENTS))
    pipe.fuse_lora(components=["unet"])
    seconds = time.perf_counter() - start
    _save_samples(pipe.unet, folder / "samples-diffusers.safetensors", peft_wrapped=True)
    return {"seconds": seconds, "rss_before": rss_before}


def variant_peft(folder: Path) -> dict:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    unet = sd15_unet()
    loras = sorted(folder.glob("lora*.safetensors"))
    rss_before = _rss_now()
    start = time.perf_counter()
    model = None
    names = []
    for index, path in enumerate(loras):
        state = {
            "base_model.model." + k.removeprefix("unet."): v
            for k, v in load_file(str(path)).items()
        }
        modules = sorted({k.split(".lora_")[0].removeprefix("base_model.model.") for k in state})
        config = LoraConfig(r=RANK, lora_alpha=RANK / 2, target_modules=modules)
        name = f"l{index}"
        if model is None:
            model = get_peft_model(unet, config, adapter_name=name)
        else:
            model.add_adapter(name, config)
        set_peft_model_state_dict(model, state, adapter_name=name)
        names.append(name)
    model.base_model.add_weighted_adapter(
        names, list(COEFFICIENTS), "merged", combination_type="cat"
    )
    model.base_model.set_adapter("merged")
    merged = model.base_model.merge_and_unload(adapter_names=["merged"])
    seconds = time.perf_counter() - start
    _save_samples(merged, folder / "samples-peft.safetensors")
    return {"seconds": seconds, "rss_before": rss_before}


def variant_stream(folder: Path) -> dict:
    from tools.weights.plan import MergePlan, WeightedExpert
    from tools.weights.stream import merge_to_file

    checkpoints = sorted(folder.glob("ckpt*.safetensors"))
    plan = MergePlan(
        checkpoints=[
            WeightedExpert(path=p, coefficient=c)
            for p, c in zip(checkpoints, CHECKPOINT_COEFFICIENTS, strict=True)
        ]
    )
    plan.recipe_hash()  # hash the inputs before timing (a one-off, cached per process)
    start = time.perf_counter()
    merge_to_file(plan, folder / "merged-stream.safetensors")
    return {"seconds": time.perf_counter() - start}


def variant_load_all(folder: Path) -> dict:
    """The peer: load every checkpoint whole, combine, save (what a naive script does)."""
    from safetensors.torch import load_file, save_file

    from tools.weights.methods import normalized, weighted_sum

    checkpoints = sorted(folder.glob("ckpt*.safetensors"))
    weights = normalized(list(CHECKPOINT_COEFFICIENTS), "softmax")
    start = time.perf_counter()
    states = [load_file(str(p)) for p in checkpoints]
    merged = {
        key: weighted_sum([s[key] for s in states], weights).to(states[0][key].dtype)
        for key in states[0]
    }
    save_file(merged, str(folder / "merged-load-all.safetensors"))
    return {"seconds": time.perf_counter() - start}


VARIANTS = {
    "ours": lambda folder: variant_ours(folder, "none"),
    "ours-disk-backup": lambda folder: variant_ours(folder, "disk"),
    "ours-memory-backup": lambda folder: variant_ours(folder, "memory"),
    "diffusers": variant_diffusers,
    "peft-cat": variant_peft,
    "stream": variant_stream,
    "load-all": variant_load_all,
}


def _rss_now() -> int:
    return _proc_status("VmRSS")


def _proc_status(field: str) -> int:
    """A memory figure of this process in bytes (``VmHWM`` is the peak RSS since exec;
    ``ru_maxrss`` would also count the parent's resident set at fork time)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _save_samples(unet, path: Path, peft_wrapped: bool = False) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for name in SAMPLES:
        module = unet.get_submodule(name)
        layer = module.base_layer if peft_wrapped and hasattr(module, "base_layer") else module
        tensors[name] = layer.weight.detach().float().contiguous()
    save_file(tensors, str(path))


# ----------------------------------------------------------------------------- driver


def run_variant(name: str, folder: Path) -> dict:
    """Run one variant in a fresh interpreter; returns its figures and peak RSS."""
    command = [sys.executable, __file__, "--variant", name, "--workdir", str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"variant {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _sample_difference(folder: Path, name: str) -> float | None:
    from safetensors.torch import load_file

    path = folder / f"samples-{name}.safetensors"
    if not path.is_file():
        return None
    ours = load_file(str(folder / "samples-ours-none.safetensors"))
    theirs = load_file(str(path))
    return max((ours[k] - theirs[k]).abs().max().item() for k in ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--skip-checkpoints", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours and diffusers")
    args = parser.parse_args()
    if args.variant:
        figures = VARIANTS[args.variant](args.workdir)
        figures["peak_rss"] = _proc_status("VmHWM")  # this process's own peak
        print(json.dumps(figures))
        return
    with tempfile.TemporaryDirectory(prefix="merge-bench-", dir=args.workdir) as tmp:
        body = _run_all(Path(tmp), args.skip_checkpoints, args.repeat)
    from evals.benchmarks_md import write_section

    write_section(
        "merge",
        "Merging: four rank-32 LoRAs into a full-size SD 1.5 UNet; streamed checkpoint merge",
        ".venv/bin/python bench/merge_bench.py",
        body,
    )
    print(body)


LORA_VARIANTS = ("ours", "diffusers", "ours-disk-backup", "ours-memory-backup", "peft-cat")
REPEATED = ("ours", "diffusers")  # the pair the speed target compares


def _run_all(folder: Path, skip_checkpoints: bool, repeat: int) -> str:
    from evals.benchmarks_md import table
    from tools.weights.families import parameter_shapes

    load = os.getloadavg()[0]
    make_loras(folder)
    base_bytes = 4 * sum(  # float32 UNet, counted on the meta device (nothing allocated)
        torch.Size(shape).numel()
        for name, shape in parameter_shapes(BaseFamily.SD15).items()
        if name.startswith("unet.")
    )
    runs: dict[str, list[dict]] = {name: [] for name in LORA_VARIANTS}
    for round_index in range(repeat):  # interleaved rounds: load changes hit every variant
        for name in LORA_VARIANTS:
            if round_index == 0 or name in REPEATED:
                runs[name].append(run_variant(name, folder))
    reference = statistics.median(r["seconds"] for r in runs["diffusers"])
    lora_rows = []
    for name, figures in runs.items():
        seconds = [r["seconds"] for r in figures]
        median = statistics.median(seconds)
        spread = f" ({min(seconds):.1f}–{max(seconds):.1f})" if len(seconds) > 1 else ""
        peak = max(r["peak_rss"] for r in figures)
        restore = figures[0].get("restore_seconds")
        sample = {"ours": "ours-none", "peft-cat": "peft"}.get(name, name)
        diff = _sample_difference(folder, sample) if not name.startswith("ours-") else None
        lora_rows.append(
            [
                name,
                len(seconds),
                f"{median:.2f}{spread}",
                f"{reference / median:.1f}×",
                f"{peak / 2**30:.2f}",
                f"{peak / base_bytes:.2f}",
                "-" if restore is None else f"{restore:.2f}",
                "-" if diff is None else f"{diff:.1e}",
            ]
        )
    parts = [
        f"Full-size SD 1.5 UNet (859.5 M parameters, float32, {base_bytes / 2**30:.2f} GiB, random "
        f"values from the real config), four rank-{RANK} LoRAs on every attention, projection "
        f"and feed-forward layer ({len(SAMPLES)} sampled weights compared with ours), raw "
        f"coefficients {list(COEFFICIENTS)}. Time: reading the LoRA files + merging into the "
        "weights. Peak RSS: the whole process (Python, torch, diffusers, the UNet), each "
        f"variant in its own subprocess; `ours` and `diffusers` run {repeat} times, interleaved "
        f"(median and range). Load average at start: {load:.1f} on {os.cpu_count()} cores "
        "(a machine shared with other jobs: timings are noisy, memory figures are not).",
        "",
        table(
            [
                "variant",
                "runs",
                "merge s, median (range)",
                "speed vs diffusers",
                "peak RSS GiB",
                "peak RSS / UNet bytes",
                "restore s",
                "max |Δ| vs ours",
            ],
            lora_rows,
        ),
        "",
        "- `ours`: `tools.weights.apply.apply_merge(..., backup='none')`; `ours-disk-backup` "
        "keeps the original slices in a scratch file (exact restore, low memory), "
        "`ours-memory-backup` in RAM.",
        "- `diffusers`: `load_lora_weights` ×4 + `set_adapters(weights)` + `fuse_lora`.",
        "- `peft-cat`: `get_peft_model`/`add_adapter` + `set_peft_model_state_dict` ×4 + "
        "`add_weighted_adapter(combination_type='cat')` + `merge_and_unload`.",
    ]
    if not skip_checkpoints:
        checkpoints = make_checkpoints(folder, len(CHECKPOINT_COEFFICIENTS))
        size = checkpoints[0].stat().st_size
        stream = run_variant("stream", folder)
        whole = run_variant("load-all", folder)
        rows = [
            [
                name,
                f"{figures['seconds']:.1f}",
                f"{figures['peak_rss'] / 2**30:.2f}",
                f"{figures['peak_rss'] / size:.2f}",
            ]
            for name, figures in (("stream (ours)", stream), ("load all (peer)", whole))
        ]
        parts += [
            "",
            f"Streamed merge of three SD 1.5-sized single-file checkpoints (real LDM keys, "
            f"float16, {size / 2**30:.2f} GiB each; softmax of {list(CHECKPOINT_COEFFICIENTS)}) "
            "into one single-file `.safetensors`:",
            "",
            table(["variant", "seconds", "peak RSS GiB", "peak RSS / one checkpoint"], rows),
        ]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
