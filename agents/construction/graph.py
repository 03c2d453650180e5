"""The construction state machine, crawl sessions that resume after a kill, and factories.

A session is one LangGraph thread in ``<data_dir>/crawl/checkpoints.sqlite``. Running the
same crawl (same source, base, types, platform URL, paths) again resumes the latest
unfinished session from its last completed node; once a session finished, the next run
starts a new one (monitoring: new versions, removals).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.construction import nodes
from agents.construction.lock import crawl_lock
from agents.construction.schemas import CrawlReport, CrawlRequest
from agents.construction.state import CrawlContext, CrawlState

if TYPE_CHECKING:
    from graph.records import BaseFamily
    from graph.universal import UniversalGraph
    from tools.settings import Settings

log = logging.getLogger(__name__)

AGENT = "construction"
STEPS_PER_EXPERT = 9


def build_graph(checkpointer: Any = None):
    """discover → per candidate (fetch → summarise → embed → download → register →
    calibrate → write_edges → finish_item) → deprecate_removed → report."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(CrawlState, context_schema=CrawlContext)
    for name in (
        "discover",
        "fetch_homepage",
        "summarise",
        "embed",
        "download",
        "register",
        "calibrate",
        "write_edges",
        "finish_item",
        "deprecate_removed",
        "report",
    ):
        builder.add_node(name, getattr(nodes, name))
    builder.add_edge(START, "discover")
    builder.add_conditional_edges("discover", nodes.route_next)
    builder.add_edge("fetch_homepage", "summarise")
    builder.add_edge("summarise", "embed")
    builder.add_edge("embed", "download")
    builder.add_conditional_edges("download", nodes.after_download)
    builder.add_conditional_edges("register", nodes.after_register)
    builder.add_edge("calibrate", "write_edges")
    builder.add_edge("write_edges", "finish_item")
    builder.add_conditional_edges("finish_item", nodes.route_next)
    builder.add_edge("deprecate_removed", "report")
    builder.add_edge("report", END)
    return builder.compile(checkpointer=checkpointer)


@contextmanager
def checkpointer(path: Path) -> Iterator[Any]:
    """A SQLite checkpointer at ``path`` (created when missing)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def find_session(graph, key: str, fresh: bool = False) -> tuple[str, bool]:
    """``(thread_id, resume)``: the latest unfinished session of ``key``, else a new one."""
    number = 1
    while True:
        thread = f"crawl-{key}-{number}"
        snapshot = graph.get_state({"configurable": {"thread_id": thread}})
        if not snapshot.values:
            return thread, False
        # ``tasks``, not ``next``: a kill after a node's writes were saved but before the
        # next checkpoint leaves ``next`` empty with that task still pending.
        if snapshot.tasks and not fresh:
            return thread, True
        number += 1


def run_crawl(
    request: CrawlRequest,
    ctx: CrawlContext,
    checkpoint_path: Path,
    on_update: Callable[[str, dict], None] | None = None,
    fresh: bool = False,
) -> CrawlReport:
    """Run (or resume) a crawl session to its end and return its report; traced.

    One crawl at a time per data directory: a second one raises ``CrawlLockedError``. The
    session is the graph's writer (other writers wait briefly, then stop).
    """
    from graph.lock import writer_lock

    tracer = ctx.tracer
    with (
        crawl_lock(Path(checkpoint_path).parent),
        writer_lock(ctx.graph.config.data_dir),
        checkpointer(checkpoint_path) as saver,
    ):
        graph = build_graph(saver)
        thread, resume = find_session(graph, request.session_key(), fresh)
        config = {
            "configurable": {"thread_id": thread},
            "recursion_limit": STEPS_PER_EXPERT * (request.max_experts + 4) + 50,
        }
        if resume:
            stored = CrawlRequest.model_validate(graph.get_state(config).values["request"])
            if stored != request:
                log.info("resuming %s with its original settings", thread)
            request = stored
        if tracer is not None:
            tracer.run_start(
                request.model_dump(mode="json"),
                session=thread,
                resumed=resume,
                demo=ctx.source.demo,
                llm="configured" if ctx.model is not None else "none (no-LLM policy)",
            )
        inputs = None if resume else {"request": request.model_dump(mode="json"), "session": thread}
        start = time.perf_counter()
        try:
            for update in graph.stream(inputs, config, context=ctx, stream_mode="updates"):
                for node, values in update.items():
                    if on_update is not None and isinstance(values, dict):
                        on_update(node, values)
        except BaseException as exc:
            if tracer is not None:
                tracer.event("run_end", error=exc, data={"session": thread})
                tracer.close()
            raise
        report = CrawlReport.model_validate(graph.get_state(config).values["report"])
    if tracer is not None:
        tracer.run_end(
            report.model_dump(mode="json"),
            mode="llm" if report.llm_summaries else "no-llm",
            demo=report.demo,
            latency_s=round(time.perf_counter() - start, 3),
        )
    return report


# -- factories ---------------------------------------------------------------------------


def make_source(request: CrawlRequest, settings: Settings):
    """The expert source of ``request`` (the demo platform is started when needed)."""
    from agents.construction.tools import CivitaiSource, HuggingFaceSource, LocalSource
    from tools.platforms.civitai import CivitaiClient
    from tools.platforms.http import HttpPolicy

    p = settings.platforms
    policy = HttpPolicy(
        requests_per_s=p.requests_per_s,
        max_retries=p.max_retries,
        max_retry_after_s=p.max_retry_after_s,
        timeout_s=p.timeout_s,
    )
    if request.source == "huggingface":
        from tools.platforms.huggingface import HuggingFaceClient

        url = request.platform_url or p.huggingface_url
        return HuggingFaceSource(HuggingFaceClient(url, settings.hf_token, policy))
    if request.source == "local":
        from tools.platforms.hash_cache import HashCache
        from tools.platforms.local import LocalScanner

        civitai = None
        if request.lookup:  # opt-in: sends every file's hash to Civitai
            quick = policy.model_copy(update={"max_retries": min(policy.max_retries, 1)})
            civitai = CivitaiClient(p.civitai_url, settings.civitai_api_key, quick)
        scanner = LocalScanner(
            civitai,
            allow_pickle=settings.allow_pickle,
            hash_cache=HashCache(settings.data_dir / "cache" / "hashes.sqlite"),
        )
        return LocalSource(scanner, [Path(x) for x in request.local_paths])
    if request.source == "demo":
        return CivitaiSource(
            CivitaiClient(request.platform_url, policy=policy, platform="demo"), request.sort
        )
    url = request.platform_url or p.civitai_url
    return CivitaiSource(CivitaiClient(url, settings.civitai_api_key, policy), request.sort)


def make_calibrator(settings: Settings, graph: UniversalGraph, base: BaseFamily, stack: ExitStack):
    """The calibrator of the settings (base model, scorers, sampling, executor)."""
    from agents.construction.tools import ExecutorCalibrator
    from graph.errors import DiffGraphError
    from tools.calibration.executor import make_executor
    from tools.calibration.tasks import SamplingSpec
    from tools.calibration.worker import WorkerSpec

    if not graph.store.reference_prompts():
        raise DiffGraphError(
            "calibration needs reference prompts and the graph has none: pass --ref-prompts "
            "FILE (one prompt per line), add them with `diffgraph graph add-ref-prompts FILE`, "
            "or crawl with --no-calibrate"
        )
    c = settings.calibration
    sampling = SamplingSpec.from_settings(settings)
    executor = make_executor(
        c.executor, WorkerSpec.from_settings(settings, sampling), c.ray_workers, c.ray_address
    )
    stack.callback(executor.close)
    return ExecutorCalibrator(graph, executor, base)


def make_context(
    request: CrawlRequest,
    settings: Settings,
    graph: UniversalGraph,
    stack: ExitStack,
    calibrator: Any = None,
) -> CrawlContext:
    """Everything the nodes need, from the settings; closed by ``stack``."""
    from tools.llm import make_chat_model
    from tools.platforms.downloads import DownloadPolicy
    from tools.platforms.homepage import make_fetcher
    from tools.tracing import TraceWriter

    p = settings.platforms
    source = make_source(request, settings)
    stack.callback(source.close)
    fetcher = make_fetcher(p.browser, p.chromium, p.page_timeout_s, p.max_page_chars)
    stack.callback(fetcher.close)
    return CrawlContext(
        graph=graph,
        source=source,
        fetcher=fetcher,
        model=make_chat_model(settings.llm),
        llm=settings.llm,
        # absolute, so the graph finds the files from any working directory
        weights_dir=(settings.data_dir / "experts").resolve(),
        download=DownloadPolicy(
            max_bytes=int(p.max_file_gb * 2**30),
            min_free_bytes=int(p.min_free_gb * 2**30),
            allow_pickle=settings.allow_pickle,
        ),
        calibrator=calibrator,
        tracer=TraceWriter.from_settings(settings, AGENT),
    )
