"""Graph Construction Agent benchmark against the local demo platform (DEMO DATA).

Measures experts registered per second without calibration (LLM replies scripted by a
local OpenAI-protocol server, homepages rendered by chromium; and, as the peer, no LLM
and no browser), with calibration on the tiny SD 1.5 pipeline, and the time to
incorporate one new expert version into an existing calibrated graph (the paper reports
1.2 min on a GPU server with real SD 1.5 models; tiny models make this a lower bound of
the agent's own overhead, not a comparable figure).

Run: .venv/bin/python bench/crawl_bench.py [--experts 41] [--calibrate-experts 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.construction.graph import make_calibrator, make_context, run_crawl
from agents.construction.schemas import CrawlRequest
from evals.benchmarks_md import table, write_section
from graph.embedding import Embedder
from graph.universal import UniversalGraph
from tools.llm.scripted_server import ScriptedOpenAIServer
from tools.platforms.demo import DemoCatalogue, DemoPlatform, demo_catalogue
from tools.platforms.demo.weights import DemoWeights
from tools.settings import (
    CalibrationSettings,
    LLMSettings,
    PlatformSettings,
    ScorerSettings,
    Settings,
)

REF_PROMPTS = (
    "a lighthouse on a cliff at dawn, dramatic clouds, highly detailed",
    "portrait of an old fisherman, oil painting, warm light",
    "a cozy cabin interior with a fireplace, snow outside",
    "a cyberpunk street at night, neon signs, rain",
)


def summary_reply(catalogue: DemoCatalogue):
    """Scripted LLM: the skill text of the demo model named in the request."""
    by_name = {m.name: m for m in catalogue.models()}

    def respond(request):
        first = next(m for m in request.messages if m.get("role") == "user")["content"]
        name = next(line[6:] for line in first.splitlines() if line.startswith("name: "))
        model = by_name[name.strip()]
        return {
            "description": model.skill_text[:590],
            "subjects": model.tags[:3],
            "styles": [model.category],
            "visual_attributes": [],
            "trigger_words": model.trigger_words,
            "recommended_weight": model.weight,
            "base_model": "sd15",
        }

    return respond


def crawl(settings, request, embedder, calibrate: bool, refs=()) -> tuple[object, float, float]:
    """One session; returns (report, seconds crawling, seconds loading the calibrator)."""
    with ExitStack() as stack:
        graph = stack.enter_context(UniversalGraph(settings.graph, embedder))
        graph.add_reference_prompts(refs)
        load = 0.0
        calibrator = None
        if calibrate:
            start = time.perf_counter()
            calibrator = make_calibrator(settings, graph, request.base, stack)
            assert calibrator.demo  # loads the worker now; tiny models are demo backends
            load = time.perf_counter() - start
        ctx = make_context(request, settings, graph, stack, calibrator)
        graph.index  # noqa: B018 - open the retrieval index outside the timed part
        start = time.perf_counter()
        report = run_crawl(request, ctx, settings.data_dir / "crawl" / "ck.sqlite")
        return report, time.perf_counter() - start, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=41, help="catalogue models crawled")
    parser.add_argument("--calibrate-experts", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10, help="calibration sampling steps")
    parser.add_argument("--images", type=int, default=2, help="images per reference prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    from tools.tiny import build_tiny_sd15, save_tiny_sd15
    from tools.tiny.clip import save_tiny_scorer_weights

    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        embedder = Embedder()
        embedder.embed(["warm up"])
        weights = DemoWeights(root / "demo-weights")
        catalogue = demo_catalogue()
        start = time.perf_counter()
        with DemoPlatform(weights, catalogue, throttle_every=None) as platform:
            platform.prepare()
        generation_s = time.perf_counter() - start
        base = save_tiny_sd15(build_tiny_sd15(0), root / "base")
        scorers = save_tiny_scorer_weights(root / "scorers")

        def settings(name: str, llm: LLMSettings, browser: str) -> Settings:
            return Settings(
                data_dir=root / name,
                llm=llm,
                device="cpu",
                base_model=base.folder,
                scorers=ScorerSettings(**scorers),
                calibration=CalibrationSettings(
                    images_per_prompt=args.images, steps=args.steps, size=64
                ),
                platforms=PlatformSettings(requests_per_s=100, browser=browser),
            )

        with (
            DemoPlatform(weights, catalogue, throttle_every=None) as platform,
            ScriptedOpenAIServer() as server,
        ):
            server.respond_with(summary_reply(catalogue))
            for label, llm, browser in (
                ("scripted LLM + chromium pages", server.llm_settings(), "auto"),
                ("no LLM, API descriptions (peer)", LLMSettings(), "off"),
            ):
                request = CrawlRequest(
                    source="demo",
                    platform_url=platform.url,
                    max_experts=args.experts,
                    calibrate=False,
                )
                name = "llm" if browser == "auto" else "nollm"
                report, seconds, _ = crawl(settings(name, llm, browser), request, embedder, False)
                n = len(report.registered)
                rows.append([label, "no", n, f"{seconds:.1f}", f"{n / seconds:.2f}", "-"])
            request = CrawlRequest(
                source="demo", platform_url=platform.url, max_experts=args.calibrate_experts
            )
            calibrated = settings("calibrated", server.llm_settings(), "auto")
            report, seconds, load = crawl(calibrated, request, embedder, True, REF_PROMPTS)
            n = len(report.registered)
            rows.append(
                [
                    "scripted LLM + chromium + calibration",
                    f"{len(REF_PROMPTS)} prompts x {args.images} images, {args.steps} steps",
                    n,
                    f"{seconds:.1f}",
                    f"{n / seconds:.2f}",
                    f"{load:.1f}",
                ]
            )
            first = sorted(catalogue.models(), key=lambda m: m.id)[0]  # listed first
            new = catalogue.publish_version(first.slug)
            platform.weights.info(*catalogue.version(new.id))  # made before the clock starts
            one = request.model_copy(update={"max_experts": 1})
            report, incorporate_s, load = crawl(calibrated, one, embedder, True)
            assert report.updated == [f"demo-{first.id}-v{new.id}"], report
    body = (
        "DEMO DATA: the local demo platform, tiny random SD 1.5 weights, tiny scorers, "
        "scripted LLM replies. Rates count experts registered per second of crawling "
        f"(warm embedder; worker load reported apart; torch threads: {args.threads}).\n\n"
        + table(["run", "calibration", "experts", "seconds", "experts/s", "worker load s"], rows)
        + f"\n\nOne new expert version into the calibrated graph ({len(REF_PROMPTS)} reference "
        f"prompts; discover, render, summarise, embed, download, register, calibrate, "
        f"write edges): **{incorporate_s:.1f} s** (+{load:.1f} s worker load), vs 1.2 min in "
        "the paper on a GPU server with real SD 1.5 weights (not comparable: tiny models).\n\n"
        f"Demo weight files of the {len(catalogue.models())} catalogue models generated once "
        f"in {generation_s:.1f} s (cached afterwards)."
    )
    command = "python bench/crawl_bench.py " + " ".join(sys.argv[1:])
    write_section("crawl", "Graph construction (crawl)", command.strip(), body)
    print(body)


if __name__ == "__main__":
    main()
