"""Warm ``select`` latency at scale (issue 15): the no-LLM selection agent over the demo
catalogue (41 experts) and over it plus synthetic experts up to 1k, 10k and 100k, per
prompt and by stage, against plain retrieval (one index query) at the same size, in the
same run.

A warm process (the chat loop, the web UI) keeps the graph, the selection context and
the embedding model loaded; each prompt gets a trace writer of its own, as the pipeline
gives it. The stages come from that trace: the tool calls' and nodes' own timings.

Synthetic experts: realistic kinds (8 % checkpoints), families (sd15 / sdxl / flux1),
5 % deprecated, descriptions, names, tags and trigger words made from a vocabulary of
styles, subjects, lighting and details. Embeddings: MiniLM embeddings of a pool of
distinct descriptions, each reused with a small random perturbation (cosine ≈ 0.97 to
its source), so that the index holds the clustered geometry of real descriptions.
Reference prompts: the demo prompts (MiniLM), with calibration edges of random scores.

Run: ``.venv/bin/python bench/select_scale_bench.py [--sizes 41,1000,10000,100000]
[--prompts 168] [--keep DIR] [--no-write]`` (``--keep`` builds the graphs there once and
reuses them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# One core, the bar: BLAS and the tokenizer would spread each small call over
# every core (and spin there); --threads sets MiniLM's ONNX Runtime threads.
for _name, _value in (
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evals.benchmarks_md import table, write_section  # noqa: E402
from graph.config import GraphConfig  # noqa: E402
from graph.records import (  # noqa: E402
    BaseFamily,
    Calibration,
    Expert,
    ExpertKind,
    ExpertStatus,
    ReferencePrompt,
)
from graph.store import GraphStore  # noqa: E402
from graph.universal import UniversalGraph, node_text, reference_prompt_id  # noqa: E402
from tools.settings import SelectionSettings  # noqa: E402

DEMO_PROMPTS = ROOT / "agents" / "demo" / "prompts.jsonl"
METRICS = ("aesthetic", "clip_score", "hps_v21", "image_reward", "pick_score")
POOL = 2000  # distinct synthetic descriptions embedded with MiniLM
JITTER = 0.25  # norm of the perturbation added to a reused description's unit embedding
WARM_UP = "a lighthouse on a cliff at dawn, watercolor, by winslow homer, trending on artstation"

STYLES = (
    "watercolor", "oil painting", "ink sketch", "pixel art", "low poly", "ukiyo-e",
    "art nouveau", "cyberpunk", "steampunk", "vaporwave", "synthwave", "comic book",
    "manga", "anime", "cel shaded", "charcoal drawing", "soft pastel", "gouache",
    "claymation", "papercut", "stained glass", "mosaic", "graffiti", "pop art",
    "impressionist", "baroque", "surrealist", "minimalist", "isometric", "blueprint",
    "line art", "chibi", "3d render", "photorealistic", "film noir", "polaroid",
    "double exposure", "tilt-shift", "infrared photo", "vintage photo", "dark fantasy",
    "cottagecore", "art deco", "retro futurism", "psychedelic", "woodcut", "linocut",
    "sumi-e", "tarot card", "storybook illustration",
)  # fmt: skip
SUBJECTS = (
    "portraits", "landscapes", "city streets", "castles", "forests", "cats", "dogs",
    "dragons", "robots", "knights", "samurai", "mermaids", "spaceships", "sports cars",
    "food", "flowers", "interiors", "architecture", "mountains", "oceans", "deserts",
    "villages", "monsters", "birds", "horses", "fashion models", "old men", "children",
    "warriors", "wizards", "ruins", "temples", "gardens", "trains", "ships", "islands",
    "caves", "waterfalls", "markets", "cafes",
)  # fmt: skip
TRAITS = (
    "bold outlines", "soft gradients", "visible brush strokes", "muted colours",
    "saturated colours", "heavy grain", "clean shapes", "high contrast", "pastel palette",
    "dramatic shadows", "flat shading", "rough paper texture", "glossy highlights",
    "limited palette", "intricate ornament", "loose sketchy lines", "crisp edges",
    "dreamy haze", "strong rim light", "warm tones", "cold tones", "film grain",
)  # fmt: skip
LIGHTS = (
    "golden hour", "neon rim", "volumetric fog", "candlelight", "moonlight",
    "studio softbox", "backlight", "god rays", "overcast", "harsh noon sun", "bioluminescent",
    "firelight", "blue hour", "stage spotlight", "lantern glow",
)  # fmt: skip
DETAILS = (
    "skin texture", "detailed eyes", "hands", "fabric folds", "hair strands",
    "metal reflections", "wood grain", "fur", "feathers", "water droplets", "jewellery",
    "armor engraving", "foliage", "stone texture",
)  # fmt: skip
NAMES = (
    "Mira", "Kael", "Suri", "Orin", "Lyra", "Tomo", "Vesna", "Arlo", "Nyx", "Ilse", "Juno",
    "Taro", "Wren", "Edda", "Pax", "Rune", "Sable", "Zeph", "Olin", "Yara",
)  # fmt: skip
ROLES = ("style", "style", "style", "concept", "concept", "lighting", "detail", "character")


def _description(rng: np.random.Generator) -> tuple[str, list[str], str]:
    """A synthetic LoRA (or, for kind ckpt, checkpoint) description, its tags and name stem."""

    def pick(words, n=1):
        return [str(w) for w in rng.choice(words, n, replace=False)]

    role = str(rng.choice(ROLES))
    style, (s1, s2), (t1, t2, t3) = pick(STYLES)[0], pick(SUBJECTS, 2), pick(TRAITS, 3)
    if role == "style":
        text = f"{style} style LoRA: renders {s1} and {s2} with {t1}, {t2} and {t3}."
        return text, ["style", *style.split()], style
    if role == "concept":
        text = f"{s1.capitalize()} concept LoRA: {s1} in a {style} look, {t1}, works for {s2}."
        return text, ["concept", s1], s1
    if role == "lighting":
        light = pick(LIGHTS)[0]
        text = f"{light.capitalize()} lighting LoRA: {light} light on {s1} and {s2}, {t1}."
        return text, ["lighting", *light.split()], light
    if role == "detail":
        detail = pick(DETAILS)[0]
        text = f"Detail LoRA for {detail}: sharper {detail} on {s1}, {t1}, no artefacts."
        return text, ["detail", detail], detail
    name = pick(NAMES)[0]
    text = f"Original character {name}: a {style} character among {s1}, {t1}, {t2}."
    return text, ["character", "original character"], name


def _checkpoint(rng: np.random.Generator) -> tuple[str, list[str], str]:
    style = str(rng.choice(STYLES))
    s1, s2 = (str(s) for s in rng.choice(SUBJECTS, 2, replace=False))
    trait = str(rng.choice(TRAITS))
    text = f"{style.capitalize()} checkpoint: general model for {s1} and {s2}, {trait}."
    return text, ["checkpoint", *style.split()], style


def synthetic_experts(n: int, seed: int = 0) -> tuple[list[Expert], list[str], np.ndarray]:
    """``n`` synthetic experts, the pool of distinct descriptions, and each expert's row in it."""
    rng = np.random.default_rng(seed)
    pool: dict[str, tuple[list[str], str, ExpertKind]] = {}
    while len(pool) < min(POOL, n):
        kind = ExpertKind.CKPT if rng.random() < 0.08 else ExpertKind.PEFT
        text, tags, stem = (_checkpoint if kind is ExpertKind.CKPT else _description)(rng)
        pool.setdefault(text, (tags, stem, kind))
    texts = list(pool)
    rows = rng.integers(0, len(texts), n)
    families = list(BaseFamily)
    bases = [families[j] for j in rng.choice(len(families), n, p=[0.5, 0.35, 0.15])]
    experts = []
    for i, (row, base) in enumerate(zip(rows, bases, strict=True)):
        tags, stem, kind = pool[texts[row]]
        experts.append(
            Expert(
                id=f"syn-{i}",
                kind=kind,
                base=base,
                name=f"{stem.title()} {'Mix' if kind is ExpertKind.CKPT else 'LoRA'} {i}",
                description=texts[row],
                description_origin="llm",
                trigger_words=[f"{stem.split()[0][:6]}{i:x}"],
                tags=tags,
                status=ExpertStatus.DEPRECATED if rng.random() < 0.05 else ExpertStatus.ACTIVE,
                demo=True,
            )
        )
    return experts, texts, rows


def _perturbed(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    noise = rng.standard_normal(x.shape).astype(np.float32)
    noise *= JITTER / np.linalg.norm(noise, axis=1, keepdims=True)
    y = x + noise
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def build(data_dir: Path, size: int, edges_per_expert: int, embedder) -> dict[str, float]:
    """The demo catalogue plus synthetic experts up to ``size``, reference prompts and
    calibration edges, indexed; returns the seconds it took."""
    from evals.selection_needs import catalogue
    from graph.prompts import read_prompts

    start = time.perf_counter()
    rng = np.random.default_rng(1)
    demo = catalogue()
    experts, texts, rows = synthetic_experts(max(size - len(demo), 0))
    x = embedder.embed([node_text(e) for e in demo] + texts, batch_size=128)
    demo_x, pool_x = x[: len(demo)], x[len(demo) :]
    refs = [
        ReferencePrompt(id=reference_prompt_id(t), text=t)
        for t in dict.fromkeys(read_prompts(DEMO_PROMPTS))
    ]
    ref_x = embedder.embed([r.text for r in refs], batch_size=128)
    with GraphStore(GraphConfig(data_dir=data_dir).store_dir) as store:
        store.add_experts(zip(demo, demo_x, strict=True))
        for lo in range(0, len(experts), 20_000):
            chunk = experts[lo : lo + 20_000]
            store.add_experts(
                zip(chunk, _perturbed(rng, pool_x[rows[lo : lo + 20_000]]), strict=True)
            )
        store.add_reference_prompts(zip(refs, ref_x, strict=True))
        ids = [e.id for e in demo + experts]
        picks = rng.integers(0, len(refs), (len(ids), edges_per_expert))
        scores = rng.random((len(ids), edges_per_expert, len(METRICS)))
        store.set_calibrations(
            Calibration(
                expert_id=expert_id,
                ref_id=refs[r].id,
                scores=dict(zip(METRICS, map(float, scores[i, k]), strict=True)),
            )
            for i, expert_id in enumerate(ids)
            for k, r in enumerate(dict.fromkeys(picks[i]))
        )
        store.compact()
    with UniversalGraph(GraphConfig(data_dir=data_dir), embedder) as graph:
        graph.index.ensure_fresh()
    return {"build_s": time.perf_counter() - start}


# -- measuring -----------------------------------------------------------------------------

STAGES = (
    ("embedding", "MiniLM ONNX embedding of the prompt and its phrases"),
    ("index queries", "top-k searches (Chroma, or exact numpy for small partitions) and records"),
    ("graph lookups", "active counts, named experts, need evidence (calibration, background)"),
    ("policy", "the need-aware filter itself"),
    ("other nodes", "parse, analyse, assemble, trace events written inside nodes"),
    ("runner + run trace", "running the state machine, run_start / run_end trace events"),
)


def stages(events, total_ms: float) -> dict[str, float]:
    """One run's milliseconds per stage, from its trace."""
    tools = {"embedding": 0.0, "index queries": 0.0, "graph lookups": 0.0}
    in_filter = 0.0  # tool time inside the filter node (the need evidence)
    nodes: dict[str, float] = {}
    for e in events:
        if e.event == "node":
            nodes[e.node] = e.latency_ms or 0.0
        elif e.event == "tool_call":
            name = e.data["tool"]
            stage = (
                "embedding"
                if name == "embed"
                else "index queries"
                if name.startswith("search_experts")
                else "graph lookups"
            )
            tools[stage] += e.latency_ms or 0.0
            in_filter += (e.latency_ms or 0.0) if e.node == "filter" else 0.0
    policy = max(nodes.get("filter", 0.0) - in_filter, 0.0)
    in_nodes = sum(nodes.values())
    return tools | {
        "policy": policy,
        "other nodes": max(in_nodes - sum(tools.values()) - policy, 0.0),
        "runner + run trace": max(total_ms - in_nodes, 0.0),
    }


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def measure(data_dir: Path, prompts: list[str], embedder) -> dict[str, object]:
    """Warm selection and plain retrieval over ``prompts`` (each prompt once)."""
    with tempfile.TemporaryDirectory() as traces:
        return _measure(data_dir, Path(traces), prompts, embedder)


def _measure(data_dir: Path, traces: Path, prompts: list[str], embedder) -> dict[str, object]:
    from agents.selection import SelectionContext, select
    from agents.selection.cache import QUERY_EMBEDDINGS
    from tools.tracing import TraceWriter, read_trace

    settings = SelectionSettings()
    QUERY_EMBEDDINGS.clear()
    with UniversalGraph(GraphConfig(data_dir=data_dir), embedder) as graph:

        def context(run: str) -> SelectionContext:
            return SelectionContext(
                graph, settings, None, tracer=TraceWriter(traces, "selection", run_id=run)
            )

        warm_s = _timed(lambda: select(WARM_UP, context("warm-up")))[0] / 1e3
        walls, cpus = [], []
        for i, prompt in enumerate(prompts):
            ctx = context(f"run-{i}")
            wall, cpu = _timed(lambda c=ctx, p=prompt: select(p, c))
            walls.append(wall)
            cpus.append(cpu)
        QUERY_EMBEDDINGS.clear()  # each prompt seen for the first time again
        untraced = [
            _timed(lambda p=p: select(p, SelectionContext(graph, settings, None)))[0]
            for p in prompts
        ]
        peer, peer_search = [], []
        for prompt in prompts:

            def plain(p=prompt) -> None:
                graph.search(graph.embedder.embed([p])[0], settings.k2, base=settings.family)

            peer.append(_timed(plain)[0])
            vector = graph.embedder.embed([prompt])[0]
            peer_search.append(
                _timed(lambda v=vector: graph.search(v, settings.k2, base=settings.family))[0]
            )
        arrays = graph.store.arrays()
    by_stage = [
        stages(read_trace(traces / "selection" / f"run-{i}.jsonl"), walls[i])
        for i in range(len(prompts))
    ]
    return {
        "warm_up_s": warm_s,
        "wall": walls,
        "cpu": cpus,
        "untraced": untraced,
        "peer": peer,
        "peer_search": peer_search,
        "stages": {name: [s[name] for s in by_stage] for name, _ in STAGES},
        "experts": len(arrays.expert_ids),
        "edges": int(arrays.edge_index.shape[1]),
    }


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="41,1000,10000,100000", help="experts per graph")
    parser.add_argument("--prompts", type=int, default=168, help="labelled prompts measured")
    parser.add_argument("--edges-per-expert", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the graphs under this folder")
    parser.add_argument(
        "--threads", type=int, default=1, help="ONNX Runtime threads (0: one per core)"
    )
    args = parser.parse_args(argv)
    from evals.selection_needs import load
    from graph.embedding import Embedder

    prompts = [item.prompt for item in load()][: args.prompts]
    embedder = Embedder(threads=args.threads)
    load_avg = os.getloadavg()
    rows, stage_rows, facts = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            data_dir = (args.keep or Path(tmp)) / f"graph-{size}"
            built = None
            if not (data_dir / "graph" / "graph.sqlite").exists():
                built = build(data_dir, size, args.edges_per_expert, embedder)
            m = measure(data_dir, prompts, embedder)
            experts = m["experts"]
            ratio = statistics.median(m["wall"]) / statistics.median(m["peer"])
            rows.append(
                [
                    f"{experts:,}",
                    f"{statistics.median(m['wall']):.1f} / {_p(m['wall'], 90):.1f}",
                    f"{statistics.median(m['cpu']):.1f}",
                    f"{statistics.median(m['untraced']):.1f}",
                    f"{statistics.median(m['peer']):.1f} "
                    f"({statistics.median(m['peer_search']):.1f})",
                    f"{ratio:.1f}×",
                    f"{m['warm_up_s']:.2f}",
                ]
            )
            stage_rows.append(
                [f"{experts:,}"]
                + [
                    f"{statistics.median(m['stages'][name]):.1f} / {_p(m['stages'][name], 90):.1f}"
                    for name, _ in STAGES
                ]
            )
            facts.append(
                f"{experts:,} experts: {m['edges']:,} calibration edges"
                + (f", built and indexed in {built['build_s']:.0f} s" if built else "")
            )
            print(rows[-1], stage_rows[-1], flush=True)
    body = (
        f"Warm process, no LLM: the demo catalogue (41 experts) plus synthetic experts (MiniLM "
        f"embeddings of {POOL:,} distinct synthetic descriptions, each reused with a random "
        f"perturbation of norm {JITTER}: cosine ≈ 0.97 to its source; 8 % checkpoints, "
        f"families sd15 / sdxl / flux1 at 50 / 35 / 15 %, 5 % deprecated), the "
        f"{len(prompts)} labelled prompts of `evals/data/selection_needs.jsonl` each selected "
        f"once after one warm-up prompt, a trace file per prompt (as the chat loop and web UI "
        f"write). Reference prompts: the 400 demo prompts, {args.edges_per_expert} calibration "
        f"edges of random scores per expert. Peer: plain retrieval, i.e. embedding the prompt "
        f"and one top-{SelectionSettings().k2} index query of the family (the query alone in "
        f"brackets). MiniLM runs on "
        + (f"{args.threads} ONNX Runtime thread(s)" if args.threads else "every core")
        + ". Bar: median ≤ 100 ms at 100,000 experts, on one core.\n\n"
        + table(
            [
                "experts",
                "select ms median / p90",
                "CPU ms median",
                "untraced ms median",
                "peer ms median (query alone)",
                "select / peer",
                "first select s",
            ],
            rows,
        )
        + "\n\nMilliseconds per stage, median / p90 over the prompts (from each run's trace):\n\n"
        + table(["experts", *(name for name, _ in STAGES)], stage_rows)
        + "\n\n"
        + "\n".join(f"- {name}: {what}" for name, what in STAGES)
        + "\n\n"
        + "; ".join(facts)
        + "."
        + f"\n\nLoad average {load_avg[0]:.1f} / {load_avg[1]:.1f} / {load_avg[2]:.1f} (1 / 5 / "
        f"15 min) when the run started, on {os.cpu_count()} cores; BLAS and the tokenizer on "
        f"one thread. CPU ms: user + system time of the process (all its threads): with "
        f"other jobs on the cores, the closer estimate of one idle core's latency."
    )
    print(body)
    if not args.no_write:
        write_section(
            "select-scale",
            "Warm selection at scale (issue 15)",
            "python bench/select_scale_bench.py",
            body,
        )


if __name__ == "__main__":
    main()
