"""The main job on embedded defaults: every part of DiffGraph, end to end.

By default on the small trained world (:mod:`agents.demo.world`): trained base, experts,
judge and CLIP. ``classic`` runs the random tiny models and the SD-style demo catalogue.

1. the base model (the world's; classic: a tiny random SD 1.5-architecture model);
2. reference prompts (world: one per expert attribute; classic: k-means medoids of real
   DiffusionDB prompts);
3. start the local demo platform and crawl it into the graph (Graph Construction Agent:
   homepages, skill summaries, downloads, calibration);
4. train the Merging Planner briefly;
5. run a scripted chat session (selection → planner → exact merge → images, recipes,
   traces);
6. benchmark the methods on a few held-out prompts and write the HTML gallery.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from graph.errors import DiffGraphError
from tools.world import WORLD_DIR

if TYPE_CHECKING:
    from tools.settings import Settings

log = logging.getLogger(__name__)

PROMPTS = Path(__file__).with_name("prompts.jsonl")
CHAT_PROMPTS = (46, 87, 91)  # rows of prompts.jsonl the scripted session starts from
TRAIN_PROMPT_SEED = 95_000  # the world's planner prompts (the benchmark's are held out)
WORLD_BENCHMARK_SEEDS = 2  # images per prompt and row of the demo's small world table
WORLD_PLANNER_BATCH = 2  # training prompts per planner step on the world's real reward


class DemoError(DiffGraphError):
    """A demo stage failed."""


@dataclass(frozen=True)
class DemoConfig:
    """How much the demo does (the defaults finish in a few minutes on 2 CPU cores)."""

    reference_prompts: int = 8
    max_experts: int = 100
    planner_steps: int = 60  # classic demo: steps on the graph's synthetic reward (fast)
    # the world: REINFORCE steps on real rewards, each WORLD_PLANNER_BATCH prompts × the
    # planner's samples merged, generated and judged (~2.6 s per sample on 2 CPU cores)
    world_planner_steps: int = 8
    benchmark_prompts: int = 3  # on the world: per held-out suite (four suites)
    ablations: bool = True
    world: Path | None = WORLD_DIR  # None: the classic demo on random tiny models


@dataclass
class DemoReport:
    """Where everything went and what ran on demo backends."""

    config: DemoConfig
    out_dir: Path
    data_dir: Path
    base_model: Path
    seconds: dict[str, float] = field(default_factory=dict)
    crawl: dict = field(default_factory=dict)
    planner: dict = field(default_factory=dict)
    turns: list[dict] = field(default_factory=list)
    benchmark: dict = field(default_factory=dict)
    demo_parts: list[str] = field(default_factory=list)


def demo_prompts(config: DemoConfig | None = None) -> list[str]:
    """Training and chat prompts: the world's held-out prompts, or real DiffusionDB ones."""
    if (config or DemoConfig()).world is not None:
        from tools.world.prompts import benchmark_prompts

        return benchmark_prompts(96, seed=TRAIN_PROMPT_SEED)
    from graph.prompts import read_prompts

    return read_prompts(PROMPTS)


def chat_script(prompts: list[str], world: bool = False) -> list[str]:
    """A few turns a user might type: prompts and refinements of them."""
    if world:
        from tools.world.prompts import chat_script as world_chat

        return world_chat()
    first, second, third = (prompts[i] for i in CHAT_PROMPTS)
    return [
        first,
        "more cinematic lighting",
        "use fewer experts",
        "/show",
        second,
        "/seed 7",
        "/save --merged",  # into the run's output folder, not the working directory
        third,
    ]


def run_demo(
    settings: Settings,
    out_dir: Path,
    say: Callable[[str], None] = log.info,
    config: DemoConfig | None = None,
) -> DemoReport:
    """Run every stage; ``say`` reports progress (the CLI prints it)."""
    config = config or DemoConfig()
    prompts = demo_prompts(config)
    if config.world is not None:
        from agents.demo.world import check_world, world_settings

        settings = world_settings(settings, check_world(config.world))
    else:
        settings = _demo_settings(settings)
    report = DemoReport(
        config=config,
        out_dir=Path(out_dir),
        data_dir=settings.data_dir,
        base_model=settings.base_model,
    )
    stages = (
        ("base model", _base_model),
        ("reference prompts", _reference_prompts),
        ("crawl", _crawl),
        ("planner", _train_planner),
        ("chat", _chat),
        ("benchmark", _benchmark),
    )
    for name, stage in stages:
        say(f"[{name}] ...")
        start = time.perf_counter()
        stage(settings, prompts, report, say)
        report.seconds[name] = round(time.perf_counter() - start, 1)
    report.demo_parts = _demo_parts(settings, report)
    _write_report(report)
    return report


def _demo_settings(settings: Settings) -> Settings:
    """The user's settings with the demo's base model and small, fast sampling."""
    base = settings.data_dir / "demo" / "tiny-sd15"
    calibration = settings.calibration.model_copy(
        update={"images_per_prompt": 1, "steps": 4, "size": 64, "executor": "local"}
    )
    generation = settings.generation.model_copy(update={"steps": 8})
    scorers = settings.scorers.model_copy(
        update={
            "clip": settings.data_dir / "demo" / "scorers" / "tiny-clip",
            "aesthetic_head": settings.data_dir
            / "demo"
            / "scorers"
            / "tiny-aesthetic-head.safetensors",
            "metrics": ["clip_score", "aesthetic"],
        }
    )
    return settings.model_copy(
        update={
            "base_model": base,
            "calibration": calibration,
            "generation": generation,
            "scorers": scorers,
        }
    )


def _base_model(settings: Settings, prompts, report: DemoReport, say) -> None:
    import shutil
    import tempfile

    from tools.platforms.demo.weights import BASE_SEED
    from tools.tiny import build_tiny_sd15, save_tiny_sd15

    if report.config.world is not None:
        say(f"  SMALL WORLD: trained base model at {settings.base_model} (not SD 1.5)")
        return
    _scorers(settings, say)
    base = settings.base_model
    if base.is_dir():
        say(f"  demo base model at {base}")
        return
    base.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=base.parent, prefix=".base-"))
    try:  # written aside, then renamed: an interrupted run leaves no half model
        files = save_tiny_sd15(build_tiny_sd15(seed=BASE_SEED), staging)
        files.folder.rename(base)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"  tiny SD 1.5-architecture base model (random weights) at {base}")


def _scorers(settings: Settings, say) -> None:
    """Tiny random CLIP scorers (clip_score, aesthetic), so calibration can run here."""
    from tools.tiny import save_tiny_scorer_weights

    if settings.scorers.clip.is_dir() and settings.scorers.aesthetic_head.is_file():
        return
    written = save_tiny_scorer_weights(settings.scorers.clip.parent)
    expected = {"clip": settings.scorers.clip, "aesthetic_head": settings.scorers.aesthetic_head}
    if {k: Path(v) for k, v in written.items()} != expected:
        raise DemoError(f"tiny scorer weights were written to {written}, expected {expected}")
    say(f"  tiny random CLIP scorers (demo) at {settings.scorers.clip.parent}")


def _reference_prompts(settings: Settings, prompts, report: DemoReport, say) -> None:
    from graph.universal import UniversalGraph
    from tools.calibration.reference import pick_reference_prompts

    with UniversalGraph(settings.graph) as graph:
        wanted = report.config.reference_prompts
        if len(graph.store.reference_prompts()) >= wanted:
            say(f"  {len(graph.store.reference_prompts())} reference prompts already in the graph")
            return
        if report.config.world is not None:
            from tools.world.prompts import reference_prompts

            picked = reference_prompts()[:wanted]
            source = "one per style and background of the world's experts, and plain ones"
        else:
            picked = pick_reference_prompts(prompts, wanted, graph.embedder)
            source = f"k-means medoids of {len(prompts)} DiffusionDB prompts"
        graph.add_reference_prompts(picked)
    say(f"  {len(picked)} reference prompts ({source})")


def _crawl(settings: Settings, prompts, report: DemoReport, say) -> None:
    from agents.construction.graph import make_calibrator, make_context, run_crawl
    from agents.construction.schemas import CrawlRequest
    from graph.records import BaseFamily
    from graph.universal import UniversalGraph
    from tools.platforms.demo import DemoPlatform, demo_catalogue

    with ExitStack() as stack:
        if report.config.world is not None:
            from agents.demo.world import world_platform

            platform = stack.enter_context(world_platform(settings, report.config.world))
            say(f"  SMALL WORLD: local demo platform serving the trained experts at {platform.url}")
        else:
            platform = stack.enter_context(
                DemoPlatform(
                    settings.data_dir / "demo-platform",
                    catalogue=demo_catalogue(1),
                    port=settings.platforms.demo_port,
                )
            )
            say(f"  DEMO DATA: local demo platform at {platform.url}")
        request = CrawlRequest(
            source="demo",
            base=BaseFamily.SD15,
            max_experts=report.config.max_experts,
            platform_url=platform.url,
            time_budget_s=1800,
        )
        graph = stack.enter_context(UniversalGraph(settings.graph))
        calibrator = make_calibrator(settings, graph, request.base, stack)
        context = make_context(request, settings, graph, stack, calibrator)

        def progress(node: str, values: dict) -> None:
            for outcome in values.get("outcomes", []) if node == "finish_item" else []:
                reason = f" ({outcome['reason']})" if outcome.get("reason") else ""
                say(f"  {outcome['status']:>10} {outcome['name']}{reason}")

        crawl = run_crawl(
            request, context, settings.data_dir / "crawl" / "checkpoints.sqlite", progress
        )
    report.crawl = {
        "registered": len(crawl.registered),
        "updated": len(crawl.updated),
        "up_to_date": crawl.up_to_date,
        "skipped": len(crawl.skipped),
        "failed": len(crawl.failed),
        "calibration_edges": crawl.calibration_edges,
        "llm_summaries": crawl.llm_summaries,
        "no_llm_summaries": crawl.no_llm_summaries,
    }
    say(f"  {report.crawl}")


def _train_planner(settings: Settings, prompts, report: DemoReport, say) -> None:
    from graph.universal import UniversalGraph
    from planner.loading import checkpoint_path
    from planner.training import train_planner

    path = checkpoint_path(settings)
    world = report.config.world is not None
    steps = report.config.world_planner_steps if world else report.config.planner_steps
    if world:
        planner = settings.planner.model_copy(update={"batch_size": WORLD_PLANNER_BATCH})
        settings = settings.model_copy(update={"planner": planner})
    with UniversalGraph(settings.graph) as graph:
        state = train_planner(
            settings,
            graph,
            prompts,
            env="real" if world else "graph",
            experts=_world_pool(graph) if world else None,
            steps=steps,
            path=path,
            resume=path.is_file(),
        )
    report.planner = {"checkpoint": str(path), "step": state.step, "env": state.env}
    reward = "real rewards (generated, judged images)" if world else "the graph's reward"
    say(f"  planner trained to step {state.step} on {reward}: {path}")


def _world_pool(graph) -> list[str]:
    """Every active expert: in the world each training prompt plans over all of them (the
    planner learns which to weight up), so no prompt is left without experts."""
    from graph.records import ExpertStatus

    return [e.id for e in graph.store.experts(status=ExpertStatus.ACTIVE)]


def _chat(settings: Settings, prompts, report: DemoReport, say) -> None:
    from agents.chat.graph import make_context, open_session, threads_path
    from agents.pipeline.context import build_context
    from agents.pipeline.pipeline import GenerateOptions

    pipeline = build_context(settings)
    try:
        side = 32 if report.config.world is not None else 64
        options = GenerateOptions(width=side, height=side)
        chat = make_context(pipeline, report.out_dir / "chat", options)
        with open_session(threads_path(settings), chat) as session:
            for message in chat_script(prompts, world=report.config.world is not None):
                turn = session.turn(message)
                report.turns.append(json.loads(turn.model_dump_json()))
                say(f"  > {message[:70]}")
                for change in turn.changes + ([turn.error] if turn.error else []):
                    say(f"    {change}")
                if turn.generated and turn.conversation.last is not None:
                    say(f"    merged: {_merged(turn.conversation.last.recipe)}")
    finally:
        pipeline.graph.close()


def _merged(recipe) -> str:
    """``name ×weight`` of each merged expert, checkpoints first."""
    experts = [*recipe.checkpoints, *recipe.loras]
    if not experts:
        return "the base model alone"
    return ", ".join(f"{e.name} ({e.kind}) ×{e.merge_weight:.2f}" for e in experts)


def _benchmark(settings: Settings, prompts, report: DemoReport, say) -> None:
    """The benchmark in its own process (nothing imports evals/): on the world, a small
    ``diffgraph eval world`` (Table 1's rows on each held-out suite); on the classic demo,
    ``diffgraph eval benchmark`` with the demo scorers."""
    import subprocess
    import sys

    out = report.out_dir / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    n = report.config.benchmark_prompts
    if report.config.world is not None:
        from agents.demo.world import world_env

        env = world_env(settings)
        args = ["world", "--world", str(report.config.world), "--per-suite", str(n)]
        args += ["--seeds", str(WORLD_BENCHMARK_SEEDS), "--skip-missing"]
    else:
        prompt_file = out / "prompts.txt"
        prompt_file.write_text("\n".join(prompts[-n:]) + "\n")
        env = {
            "DIFFGRAPH_DATA_DIR": str(settings.data_dir),
            "DIFFGRAPH_BASE_MODEL": str(settings.base_model),
        }
        args = ["benchmark", "--prompts", str(prompt_file), "--demo-scorers"]
        args += ["--size", "64x64", "--steps", "8"]
        if report.config.ablations:
            args += ["--ablations", "all", "--train-steps", str(report.config.planner_steps // 2)]
    command = [sys.executable, "-c", "from main import app; app()", "eval", *args]
    command += ["--out", str(out), "--json"]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DemoError(f"the benchmark stage failed: {done.stderr.strip()[-2000:]}")
    files = json.loads(done.stdout)["files"]
    report.benchmark = {k: str(out / v) for k, v in files.items()}
    say(f"  {', '.join(f'{k}: {v}' for k, v in report.benchmark.items())}")


def _demo_parts(settings: Settings, report: DemoReport) -> list[str]:
    if report.config.world is not None:
        from agents.demo.world import PARTS

        parts = list(PARTS)
        parts.append(
            f"planner: trained only {report.config.world_planner_steps} REINFORCE steps on "
            "real rewards (experts merged, images generated and judged): too few to learn much"
        )
        if not settings.llm.configured:
            parts.append("agents: no LLM configured, so the deterministic no-LLM policy ran")
        return parts
    parts = [
        "base model: tiny SD 1.5-architecture pipeline with random weights (images are noise)",
        "experts: the DEMO DATA catalogue of the local demo platform (tiny random weights)",
        "calibration and benchmark scores: tiny random CLIP scorers (demo scorers)",
        "planner: trained on the synthetic reward, not on real images",
    ]
    if not settings.llm.configured:
        parts.append("agents: no LLM configured, so the deterministic no-LLM policy ran")
    return parts


def _write_report(report: DemoReport) -> None:
    report.out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in report.__dict__.items()}
    data["config"] = report.config.__dict__
    (report.out_dir / "demo-report.json").write_text(json.dumps(data, indent=2, default=str))
