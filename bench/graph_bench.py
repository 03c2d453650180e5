"""Universal-graph benchmark: load, incremental add, filtered top-10 search (Chroma vs numpy).

Run: .venv/bin/python bench/graph_bench.py [--experts 100000] [--refs 200]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.benchmarks_md import table, write_section
from graph.config import GraphConfig
from graph.index import numpy_topk
from graph.records import (
    BaseFamily,
    Calibration,
    Expert,
    ExpertKind,
    ExpertStatus,
    ReferencePrompt,
)
from graph.store import GraphStore
from graph.universal import UniversalGraph

DIM = 384
METRICS = ("aesthetic", "clip_score", "hps_v21", "image_reward", "pick_score")


PROMPTS = Path("/work/shared/data/prompts")
LOCAL_PROMPTS = Path(__file__).resolve().parent.parent / "agents" / "demo" / "prompts.jsonl"


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the sphere: the worst case for HNSW (every point nearly equidistant)."""
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _phrases() -> list[str]:
    """Comma phrases of real DiffusionDB prompts (the shared data set, else the demo's)."""
    from graph.prompts import read_prompts

    source = PROMPTS / "diffusiondb_train.jsonl"
    prompts = read_prompts(source if source.is_file() else LOCAL_PROMPTS)
    return sorted({p.strip() for text in prompts for p in text.split(",") if len(p.strip()) > 3})


def embeddings(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """``random`` vectors, or MiniLM embeddings of ``n`` skill descriptions made of three
    phrases of real prompts each (the geometry real expert nodes have)."""
    if kind == "random":
        return unit(rng, n)
    from graph.embedding import Embedder

    phrases = _phrases()
    picks = rng.integers(0, len(phrases), (n, 3))
    texts = [", ".join(phrases[i] for i in row) for row in picks]
    return Embedder().embed(texts, batch_size=256)


def queries(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Random vectors, or MiniLM embeddings of real held-out prompts."""
    if kind == "random":
        return unit(rng, n)
    from graph.embedding import Embedder
    from graph.prompts import read_prompts

    source = PROMPTS / "diffusiondb_val.jsonl"
    texts = read_prompts(source if source.is_file() else LOCAL_PROMPTS, limit=n)
    return Embedder().embed(texts)


EMBEDDINGS = {
    "minilm": "MiniLM embeddings of descriptions made of three phrases of real DiffusionDB "
    "prompts; queries: real held-out DiffusionDB prompts",
    "random": "uniform random unit vectors, the worst case for HNSW; random queries",
}


def build(
    root: Path, n_experts: int, n_refs: int, edges_per_expert: int, kind: str
) -> dict[str, float]:
    rng = np.random.default_rng(0)
    kinds = [ExpertKind.CKPT, ExpertKind.PEFT, ExpertKind.PEFT, ExpertKind.PEFT]
    bases = list(BaseFamily)
    experts = [
        Expert(
            id=f"syn-{i}",
            kind=kinds[i % 4],
            base=bases[i % 3],
            name=f"synthetic expert {i}",
            description=f"synthetic skill {i}",
            status=ExpertStatus.DEPRECATED if i % 10 == 0 else ExpertStatus.ACTIVE,
            demo=True,
        )
        for i in range(n_experts)
    ]
    t0 = time.perf_counter()
    with GraphStore(root / "graph") as store:
        store.add_reference_prompts(
            (ReferencePrompt(id=f"ref-{j}", text=f"reference prompt {j}"), v)
            for j, v in enumerate(unit(rng, n_refs))
        )
        store.add_experts(zip(experts, embeddings(rng, n_experts, kind), strict=True))
        refs = rng.integers(0, n_refs, (n_experts, edges_per_expert))
        scores = rng.random((n_experts, edges_per_expert, len(METRICS)))
        store.set_calibrations(
            Calibration(
                expert_id=f"syn-{i}",
                ref_id=f"ref-{r}",
                scores=dict(zip(METRICS, map(float, scores[i, k]), strict=True)),
            )
            for i in range(n_experts)
            for k, r in enumerate(dict.fromkeys(refs[i]))
        )
        store.compact()
        edges = store.arrays().edge_index.shape[1]
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    with UniversalGraph(GraphConfig(data_dir=root)) as graph:
        graph.index.ensure_fresh()
    indexed = time.perf_counter() - t0
    return {"build_s": built, "index_s": indexed, "edges": edges}


def measure(root: Path, searches: int, adds: int, kind: str) -> dict[str, object]:
    rng = np.random.default_rng(1)
    gc.collect()
    t0 = time.perf_counter()
    store = GraphStore(root / "graph")
    arrays = store.arrays()
    load_s = time.perf_counter() - t0
    store.close()

    config = GraphConfig(data_dir=root)
    with UniversalGraph(config) as graph:
        graph.index.ensure_fresh()
        queries_x = queries(rng, searches, kind)
        filters = {"kind": ExpertKind.PEFT, "base": BaseFamily.SD15}
        graph.index.query(queries_x[0], 10, **filters)  # warm-up
        chroma, brute, agree = [], [], []
        for q in queries_x:
            t = time.perf_counter()
            hits = graph.index.query(q, 10, **filters)
            chroma.append(time.perf_counter() - t)
            t = time.perf_counter()
            exact = numpy_topk(arrays, q, 10, status=ExpertStatus.ACTIVE, **filters)
            brute.append(time.perf_counter() - t)
            agree.append(len({h.expert_id for h in hits} & {h.expert_id for h in exact}) / 10)

        new = unit(rng, adds)
        add_times = []
        for i in range(adds):
            expert = Expert(
                id=f"new-{i}",
                kind=ExpertKind.PEFT,
                base=BaseFamily.SD15,
                name=f"new {i}",
                description="new skill",
                demo=True,
            )
            t = time.perf_counter()
            graph.add_expert(expert, new[i])
            add_times.append(time.perf_counter() - t)
    return {
        "load_s": load_s,
        "experts": len(arrays.expert_ids),
        "chroma_ms": np.array(chroma) * 1e3,
        "numpy_ms": np.array(brute) * 1e3,
        "recall": float(np.mean(agree)),
        "add_ms": np.array(add_times) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experts", type=int, default=100_000)
    parser.add_argument("--refs", type=int, default=200)
    parser.add_argument("--edges-per-expert", type=int, default=10)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--adds", type=int, default=100)
    parser.add_argument("--embeddings", choices=("minilm", "random"), default="minilm")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        built = build(root, args.experts, args.refs, args.edges_per_expert, args.embeddings)
        m = measure(root, args.searches, args.adds, args.embeddings)

    def p(values, q):
        return f"{np.percentile(values, q):.2f}"

    rows = [
        ["load (store open + dense arrays)", f"{m['load_s'] * 1e3:.0f} ms", "< 1 s"],
        [
            "add one expert (store + index; embedding excluded) p50 / p99",
            f"{p(m['add_ms'], 50)} / {p(m['add_ms'], 99)} ms",
            "< 20 ms",
        ],
        [
            "filtered top-10 search, Chroma p50 / p99",
            f"{p(m['chroma_ms'], 50)} / {p(m['chroma_ms'], 99)} ms",
            "p50 < 5 ms",
        ],
        [
            "filtered top-10 search, numpy brute force p50 / p99 (peer)",
            f"{p(m['numpy_ms'], 50)} / {p(m['numpy_ms'], 99)} ms",
            "",
        ],
    ]
    ratio = np.median(m["numpy_ms"]) / np.median(m["chroma_ms"])
    body = (
        f"Synthetic graph: {args.experts:,} experts ({EMBEDDINGS[args.embeddings]}; "
        "kinds ckpt/peft, "
        f"families sd15/sdxl/flux1, 10 % deprecated), {args.refs} reference prompts, "
        f"{built['edges']:,} calibration edges × {len(METRICS)} metrics. Filter: kind=peft, "
        f"base=sd15, status=active ({args.searches} queries). Build "
        f"{built['build_s']:.1f} s"
        + (" (embedding the descriptions on CPU included)" if args.embeddings == "minilm" else "")
        + f", Chroma index build {built['index_s']:.1f} s.\n\n"
        + table(["measure", "figure", "target"], rows)
        + f"\n\nChroma vs numpy brute force: {ratio:.1f}× faster at p50; Chroma top-10 "
        f"recall against the exact result {m['recall']:.3f} (HNSW is approximate)."
    )
    print(body)
    if not args.no_write:
        minilm = args.embeddings == "minilm"
        write_section(
            "graph" if minilm else "graph-random",
            "Universal graph (bench/graph_bench.py)"
            + ("" if minilm else ": random embeddings, the worst case"),
            "python bench/graph_bench.py" + ("" if minilm else " --embeddings random"),
            body,
        )


if __name__ == "__main__":
    main()
