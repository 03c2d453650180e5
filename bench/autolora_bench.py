"""AutoLoRA benchmark: retrieval quality of the weight encoder on the synthetic LoRA set
(DEMO DATA) against an untrained encoder; the factored token and global-LoRA paths against
dense deltas at full SD 1.5 size (rank-32 LoRAs, random factors); and the cost of gated
fusion per image on the tiny SD 1.5 pipeline against a plain in-place merge.

Run: .venv/bin/python bench/autolora_bench.py [--steps 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from evals.benchmarks_md import table, write_section

RANK = 32
LORAS = 3
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def retrieval(steps: int) -> tuple[str, list[list[object]]]:
    """Held-out synthetic LoRAs: concept top-1 from captions, same/other-concept cosine."""
    from graph.embedding import Embedder
    from tools.autolora.config import EncoderConfig, EncoderTrainConfig
    from tools.autolora.contrastive import EncoderExample, build_encoder, train_encoder
    from tools.autolora.synthetic import synthetic_loras
    from tools.autolora.tokens import lora_layers
    from tools.tiny import build_tiny_sd15
    from tools.tiny.experts import target_modules

    pipe = build_tiny_sd15(0)
    shapes = {n: tuple(m.weight.shape) for n, m in target_modules(pipe).items()}
    train, held_out = synthetic_loras(shapes, 4, seed=0), synthetic_loras(shapes, 3, seed=1)
    examples = [EncoderExample(s.id, lora_layers(s.adapter), s.captions) for s in train]
    embedder = Embedder()
    config = EncoderConfig(d_model=64, layers=2, heads=4)
    torch.manual_seed(0)
    untrained = build_encoder(examples, config).eval()
    start = time.perf_counter()
    result = train_encoder(
        examples, embedder.embed, config, EncoderTrainConfig(steps=steps, batch_size=12, lr=3e-3)
    )
    seconds = time.perf_counter() - start
    captions = [c for s in held_out[::3] for c in s.captions]
    truth = [s.concept for s in held_out[::3] for _ in s.captions]
    text = torch.as_tensor(embedder.embed(captions))
    rows = []
    for name, encoder in (("untrained encoder (peer)", untrained), ("trained", result.encoder)):
        vectors = encoder.embed([lora_layers(s.adapter) for s in held_out])
        best = (text @ vectors.T).argmax(1)
        top1 = sum(held_out[int(i)].concept == t for i, t in zip(best, truth, strict=True))
        sims = vectors @ vectors.T
        same, other = [], []
        for i in range(len(held_out)):
            for j in range(i + 1, len(held_out)):
                bucket = same if held_out[i].concept == held_out[j].concept else other
                bucket.append(float(sims[i, j]))
        rows.append(
            [
                name,
                f"{top1}/{len(captions)}",
                f"{statistics.mean(same):.3f}",
                f"{statistics.mean(other):.3f}",
            ]
        )
    note = (
        f"{len(train)} training / {len(held_out)} held-out synthetic LoRAs of "
        f"{len({s.concept for s in train})} concepts on the tiny SD 1.5 layers; {steps} steps "
        f"(batch 12) took {seconds:.1f} s; loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}"
    )
    return note, rows


def full_size_lora(seed: int):
    from graph.records import BaseFamily
    from tools.weights.adapter import Adapter, AdapterModule
    from tools.weights.families import module_shapes

    g = torch.Generator().manual_seed(seed)
    modules = {}
    for name, shape in module_shapes(BaseFamily.SD15).items():
        if not name.startswith("unet.") or not name.endswith(TARGETS) or len(shape) != 2:
            continue
        out_dim, in_dim = shape
        factors = {
            "up": torch.randn(out_dim, RANK, generator=g) * 0.01,
            "down": torch.randn(RANK, in_dim, generator=g) * 0.01,
        }
        modules[name] = AdapterModule(kind="lora", factors=factors, alpha=float(RANK))
    return Adapter(format="kohya-lora", family=BaseFamily.SD15, modules=modules)


def full_size(repeat: int) -> tuple[str, list[list[object]]]:
    """Tokens ``B (A p)`` vs ``(B A) p``; global LoRA by thin QR vs dense SVD; SD 1.5 size."""
    from tools.autolora.branches import global_branch, module_branch
    from tools.autolora.tokens import lora_layers

    adapters = [full_size_lora(seed) for seed in range(LORAS)]
    layers = lora_layers(adapters[0]).layers
    probes = {f.type_key: torch.randn(f.in_dim) for f in layers}

    def factored():
        for f in layers:
            f.up @ (f.down @ probes[f.type_key])

    def dense():
        for f in layers:
            (f.up @ f.down) @ probes[f.type_key]

    names = list(adapters[0].modules)
    linears = {
        n: torch.nn.Linear(*reversed(adapters[0].modules[n].natural_shape()), device="meta")
        for n in names
    }
    branches = {n: [module_branch(a.modules[n], linears[n]) for a in adapters] for n in names}

    def ours():
        return {n: global_branch(branches[n], 4).delta() for n in names}

    def svd():
        out = {}
        for n in names:
            total = sum(b.delta() for b in branches[n])
            u, s, vh = torch.linalg.svd(total, full_matrices=False)
            out[n] = (u[:, :4] * s[:4]) @ vh[:4]
        return out

    t_fact, t_dense = _best(factored, repeat), _best(dense, repeat)
    start = time.perf_counter()
    reference = svd()
    t_svd = time.perf_counter() - start
    start = time.perf_counter()
    got = ours()
    t_ours = time.perf_counter() - start
    error = max(float((got[n] - reference[n]).abs().max()) for n in names)
    scale = max(float(reference[n].abs().max()) for n in names)
    rows = [
        [
            "LoRA tokens (one LoRA)",
            f"{t_fact * 1000:.1f} ms",
            f"{t_dense * 1000:.1f} ms",
            f"{t_dense / t_fact:.1f}x",
        ],
        [
            f"global LoRA, {LORAS} LoRAs, rank 4",
            f"{t_ours * 1000:.0f} ms",
            f"{t_svd * 1000:.0f} ms",
            f"{t_svd / t_ours:.1f}x",
        ],
    ]
    note = (
        f"{len(names)} UNet linear layers of SD 1.5 ({', '.join(TARGETS)}), rank-{RANK} LoRAs. "
        f"Peers: the dense delta `(B A) p` and `torch.linalg.svd` of the summed dense deltas. "
        f"Largest difference of the rank-4 global deltas: {error:.2e} (entries up to {scale:.2e})"
    )
    return note, rows


def fusion_cost(repeat: int) -> tuple[str, list[list[object]]]:
    """Seconds per tiny image: base, in-place merge of 2 LoRAs, gated fusion of 2 and 3."""
    from tools.autolora.fusion import gated_fusion
    from tools.tiny import build_tiny_sd15
    from tools.tiny.experts import tiny_lora_adapter
    from tools.weights.apply import apply_merge
    from tools.weights.plan import MergePlan, WeightedExpert
    from tools.weights.write import save_adapter

    pipe = build_tiny_sd15(0)
    adapters = [tiny_lora_adapter(pipe, seed) for seed in range(1, 4)]

    def image():
        pipe("a cat", num_inference_steps=8, width=64, height=64, output_type="pt")

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        paths = [save_adapter(a, Path(folder) / f"{i}.safetensors") for i, a in enumerate(adapters)]
        plan = MergePlan(
            loras=[WeightedExpert(path=p, coefficient=1.0) for p in paths[:2]], normalize="raw"
        )
        components = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
        base = _best(image, repeat)

        def merged():
            with apply_merge(components, plan):
                image()

        t_merged = _best(merged, repeat)

        def gated(n):
            with gated_fusion(pipe, adapters[:n], None):
                image()

        t_gated2 = _best(lambda: gated(2), repeat)
        t_gated3 = _best(lambda: gated(3), repeat)
    rows = [
        ["base model", f"{base:.3f}", "1.00x"],
        ["in-place merge, 2 LoRAs (peer)", f"{t_merged:.3f}", f"{t_merged / base:.2f}x"],
        ["gated fusion, 2 LoRAs", f"{t_gated2:.3f}", f"{t_gated2 / base:.2f}x"],
        ["gated fusion, 3 LoRAs", f"{t_gated3:.3f}", f"{t_gated3 / base:.2f}x"],
    ]
    note = (
        "One 64x64 image, 8 DDIM steps, on the tiny SD 1.5 pipeline (random weights, DEMO); "
        "176 adapted layers (UNet attention, text encoder attention), untrained gates with the "
        "rank-4 global LoRA; times include applying and undoing the merge or the hooks. Not "
        "measured at full size (no GPU here): the fusion adds per-layer work for every LoRA."
    )
    return note, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = [
        (
            "Weight-encoder retrieval (synthetic LoRAs, DEMO DATA)",
            lambda: retrieval(args.steps),
            ["encoder", "caption -> concept top-1", "cos same concept", "cos other"],
        ),
        (
            "Factored math at full SD 1.5 size",
            lambda: full_size(args.repeat),
            ["operation", "ours", "dense peer", "speed-up"],
        ),
        (
            "Gated fusion cost per image (tiny pipeline)",
            lambda: fusion_cost(args.repeat),
            ["variant", "seconds / image", "vs base"],
        ),
    ]
    parts = []
    for title, measure, columns in sections:
        note, rows = measure()
        parts.append(f"### {title}\n\n{note}\n\n{table(columns, rows)}")
    body = "\n\n".join(parts)
    write_section(
        "autolora",
        "AutoLoRA: weight-encoder retrieval and gated fusion",
        "python bench/autolora_bench.py",
        body,
    )
    print(body)


if __name__ == "__main__":
    main()
