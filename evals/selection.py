"""Selection benchmark: precision, recall, redundancy, LLM requests and latency per prompt.

Runs the Expert Selection Agent over labelled prompt sets, each against a graph built from
its catalogue. Both catalogues are DEMO data:

- ``demo-platform``: the official demo catalogue of the local demo platform
  (``tools/platforms/demo``), each expert described by its homepage skill text (what a
  crawl that renders pages reads);
- ``traps``: ``evals/data/selection_catalogue.json``, a smaller catalogue made for this
  benchmark, with traps: near-duplicate skills, irrelevant-but-similar experts (a red
  flamingo for red hair), another family's copy and a deprecated version.

Modes:

- ``retrieval``: pure embedding retrieval without filtering (the baseline): the agent
  with every threshold and bound opened, so all top-K1 / top-K2 candidates are kept;
- ``no-llm``: the no-LLM policy (similarity threshold + MMR de-duplication);
- ``llm-scripted``: the real ``langchain-openai`` client against the local scripted
  OpenAI-protocol server. Its analysis replies are hand-written per prompt (what a
  competent LLM answers) and its filtering replies come from an oracle that keeps exactly
  the gold candidates, one per skill. This measures the pipeline around the LLM (the
  retrieval ceiling of recall, the request count, the overhead), not an LLM;
- ``llm``: a real endpoint from the settings (``OPENAI_BASE_URL`` / ``OPENAI_MODEL``),
  when one is configured and ``--real-llm`` is given.

Gold labels are skill groups (``"red-hair"``, ``"eyes"``): any expert of a gold group
counts as right, and a second expert of the same group counts as redundant.

``python -m evals.selection [--write]`` prints the tables; ``--write`` also replaces the
``selection`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
CATALOGUE = DATA / "selection_catalogue.json"
PROMPTS = DATA / "selection_prompts.jsonl"
DEMO_PLATFORM_PROMPTS = DATA / "selection_prompts_demo_platform.jsonl"
DATASETS = ("demo-platform", "traps")
MODES = ("retrieval", "no-llm", "llm-scripted")
_CANDIDATES = re.compile(r"<<<DATA candidates \w+>>>\n(.*)\n<<<END candidates", re.S)


@dataclass
class LabelledPrompt:
    prompt: str
    gold: set[str]
    analysis: dict[str, Any] | None = None  # the scripted LLM's analysis reply


def load_catalogue(path: Path = CATALOGUE) -> tuple[list, dict[str, str]]:
    """Expert records and their skill group by id."""
    from graph.records import Expert

    data = json.loads(Path(path).read_text())
    return [Expert.model_validate(e) for e in data["experts"]], data["groups"]


def demo_platform_catalogue() -> tuple[list, dict[str, str]]:
    """The demo platform's catalogue as expert records (``demo-<slug>``, grouped by slug)."""
    from graph.records import BaseFamily, Expert, ExpertKind, Source
    from tools.platforms.demo.catalogue import demo_catalogue

    experts = [
        Expert(
            id=f"demo-{m.slug}",
            kind=ExpertKind.CKPT if m.type == "Checkpoint" else ExpertKind.PEFT,
            base=BaseFamily.SD15,
            name=m.name,
            description=m.skill_text,
            description_origin="demo",
            trigger_words=m.trigger_words,
            tags=m.tags,
            source=Source(platform="demo", model_id=str(m.id)),
            demo=True,
        )
        for m in demo_catalogue().models()
    ]
    return experts, {e.id: e.id.removeprefix("demo-") for e in experts}


def load_dataset(name: str) -> tuple[list, dict[str, str], list[LabelledPrompt]]:
    """Experts, skill groups and labelled prompts of a named dataset."""
    if name == "demo-platform":
        return (*demo_platform_catalogue(), load_prompts(DEMO_PLATFORM_PROMPTS))
    if name == "traps":
        return (*load_catalogue(CATALOGUE), load_prompts(PROMPTS))
    raise SystemExit(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")


def load_prompts(path: Path = PROMPTS) -> list[LabelledPrompt]:
    items = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            items.append(LabelledPrompt(row["prompt"], set(row["gold"]), row.get("analysis")))
    return items


def score(selected: list[str], gold: set[str], groups: dict[str, str]) -> dict[str, float]:
    """Precision, recall and redundancy of one selection, by skill group.

    A selected expert is right when its group is gold and not already covered; the
    redundancy rate is the share of selected experts whose group another selected expert
    already has. An empty selection has precision 1 (nothing wrong was chosen).
    """
    seen: set[str] = set()
    right = redundant = 0
    for expert_id in selected:
        group = groups.get(expert_id, expert_id)
        if group in seen:
            redundant += 1
            continue
        seen.add(group)
        right += group in gold
    n = len(selected)
    return {
        "precision": right / n if n else 1.0,
        "recall": len(seen & gold) / len(gold) if gold else 1.0,
        "redundancy": redundant / n if n else 0.0,
        "selected": n,
    }


def run(
    experts: list,
    groups: dict[str, str],
    items: list[LabelledPrompt],
    modes: tuple[str, ...] = MODES,
    real_llm: Any = None,
    embedder: Any = None,
) -> dict[str, dict[str, Any]]:
    """Per-mode means and per-prompt rows. ``real_llm``: LLMSettings for mode ``llm``."""
    from graph.config import GraphConfig
    from graph.embedding import Embedder
    from graph.universal import UniversalGraph

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        graph = UniversalGraph(GraphConfig(data_dir=Path(tmp) / "data"), embedder or Embedder())
        graph.add_experts(experts)
        for mode in modes:
            with _mode_context(mode, graph, groups, real_llm, Path(tmp)) as (ctx, server):
                rows = [_one(item, ctx, server, groups) for item in items]
            results[mode] = {"rows": rows, "mean": _means(rows)}
        graph.close()
    return results


@contextmanager
def _mode_context(mode: str, graph, groups, real_llm, tmp: Path) -> Iterator[tuple[Any, Any]]:
    from agents.selection import SelectionContext
    from tools.llm import make_chat_model
    from tools.settings import SelectionSettings
    from tools.tracing import TraceWriter

    settings = SelectionSettings()
    if mode == "retrieval":
        settings = settings.model_copy(
            update={
                "min_similarity": -1.0,
                "relative_margin": 2.0,
                "redundancy_threshold": 1.0,
                "max_checkpoints": 10,
                "max_loras": 32,
            }
        )
    tracer = TraceWriter(tmp / "traces", "selection", run_id=f"bench-{mode}")
    if mode == "llm-scripted":
        from tools.llm.scripted_server import ScriptedOpenAIServer

        server = _ScriptedLLM(groups)
        with ScriptedOpenAIServer() as http:
            http.respond_with(server.reply)
            llm = http.llm_settings()
            yield SelectionContext(graph, settings, make_chat_model(llm), llm, tracer), server
    elif mode == "llm":
        if real_llm is None:
            raise SystemExit("mode llm needs a configured endpoint (OPENAI_BASE_URL, OPENAI_MODEL)")
        yield SelectionContext(graph, settings, make_chat_model(real_llm), real_llm, tracer), None
    else:
        yield SelectionContext(graph, settings, None, tracer=tracer), None
    tracer.close()


class _ScriptedLLM:
    """Replies of the scripted server: the prompt's hand-written analysis, and an oracle
    filter that keeps the gold candidates (first one per skill group)."""

    def __init__(self, groups: dict[str, str]) -> None:
        self.groups = groups
        self.item: LabelledPrompt | None = None

    def reply(self, request) -> dict[str, Any]:
        body = json.dumps(request.body.get("response_format") or request.body.get("tools"))
        if "PromptAnalysis" in body:
            return self.item.analysis
        listing = json.loads(_CANDIDATES.search(request.last_user_text)[1])
        taken = {self.groups.get(r["id"]) for r in listing["requested_by_user"]}
        verdicts = []
        for card in listing["checkpoints"] + listing["loras"]:
            group = self.groups.get(card["id"])
            keep = group in self.item.gold and group not in taken
            if keep:
                taken.add(group)
            verdicts.append(
                {"id": card["id"], "keep": keep, "reason": "gold" if keep else "not gold"}
            )
        return {"reasoning": "oracle", "verdicts": verdicts}


def _one(item: LabelledPrompt, ctx, server, groups) -> dict[str, Any]:
    from agents.selection import select

    if server is not None:
        server.item = item
    result = select(item.prompt, ctx)
    ids = result.expert_ids
    return {
        "prompt": item.prompt,
        "selected": ids,
        **score(ids, item.gold, groups),
        "llm_requests": result.llm_requests,
        "latency_ms": result.latency_ms,
        "mode": result.mode,
    }


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("precision", "recall", "redundancy", "selected", "llm_requests", "latency_ms")
    means = {k: statistics.fmean(r[k] for r in rows) for k in keys}
    latencies = sorted(r["latency_ms"] for r in rows)
    means["latency_p50_ms"] = statistics.median(latencies)
    return means


MODE_NAMES = {
    "retrieval": "embedding retrieval, no filtering (baseline)",
    "no-llm": "no-LLM policy (threshold + MMR)",
    "llm-scripted": "LLM mode, scripted server (oracle filter)",
    "llm": "LLM mode, real endpoint",
}
COLUMNS = [
    "mode",
    "precision",
    "recall",
    "redundancy",
    "experts/prompt",
    "LLM requests/prompt",
    "latency ms (mean)",
    "latency ms (p50)",
]
DATASET_TEXT = {
    "demo-platform": "the demo platform's catalogue (`tools/platforms/demo`, 41 invented "
    "experts described by their homepage skill text) and "
    "`evals/data/selection_prompts_demo_platform.jsonl`",
    "traps": "`evals/data/selection_catalogue.json` (38 invented experts with traps: "
    "near-duplicate skills, irrelevant-but-similar experts, an sdxl copy and a deprecated "
    "version) and `evals/data/selection_prompts.jsonl`",
}


def table_for(results: dict[str, dict[str, Any]]) -> str:
    from evals.benchmarks_md import table

    rows = [
        [
            MODE_NAMES.get(mode, mode),
            *(f"{m[k]:.3f}" for k in ("precision", "recall", "redundancy")),
            f"{m['selected']:.2f}",
            f"{m['llm_requests']:.2f}",
            f"{m['latency_ms']:.1f}",
            f"{m['latency_p50_ms']:.1f}",
        ]
        for mode, m in ((mode, r["mean"]) for mode, r in results.items())
    ]
    return table(COLUMNS, rows)


def report(by_dataset: dict[str, tuple[int, dict]], load: float | None = None) -> str:
    """Markdown: one table per dataset (``name -> (prompt count, results)``) and notes."""
    parts = [
        f"**{name}**: {count} labelled prompts over {DATASET_TEXT.get(name, name)}. "
        f"All DEMO data. Means per prompt.\n\n{table_for(results)}"
        for name, (count, results) in by_dataset.items()
    ]
    notes = [
        "Gold labels are skill groups. An expert of a gold group counts as right. A second "
        "expert of a group already chosen counts as redundant.",
        "The scripted LLM row is not a language model. Its analyses are hand-written and its "
        "filter is an oracle that keeps the gold candidates, so its precision is 1 by "
        "construction and its recall is the ceiling that retrieval leaves for filtering. "
        "Its latency is the pipeline's own overhead. Measure a real model with "
        "`python -m evals.selection --real-llm` and an endpoint in the settings.",
        "Latency includes embedding the queries with all-MiniLM-L6-v2 on CPU and the Chroma "
        "top-k queries. The first prompt of the first mode also loads the model."
        + (
            f" The 1-minute load average was {load:.1f} when the run started (other "
            "processes shared the CPUs), so the latencies are only comparable within this run."
            if load is not None
            else ""
        ),
    ]
    return "\n\n".join(parts) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--real-llm", action="store_true", help="also run mode llm")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--rows", action="store_true", help="print per-prompt rows")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    modes = tuple(m for m in args.modes.split(",") if m)
    real = None
    if args.real_llm:
        from tools.settings import load_settings

        real = load_settings().llm
        modes += ("llm",)
    from graph.embedding import Embedder

    embedder = Embedder()
    load = os.getloadavg()[0]
    by_dataset = {}
    for name in (d for d in args.datasets.split(",") if d):
        experts, groups, items = load_dataset(name)
        results = run(experts, groups, items, modes, real, embedder)
        by_dataset[name] = (len(items), results)
        if args.rows:
            for mode, result in results.items():
                for row in result["rows"]:
                    print(name, mode, json.dumps(row, ensure_ascii=False))
    text = report(by_dataset, load)
    print(text)
    if args.write:
        from evals.benchmarks_md import write_section

        command = "python -m evals.selection --write"
        write_section("selection", "Expert selection (issue 6)", command, text)


if __name__ == "__main__":
    main()
