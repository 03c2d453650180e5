"""The selection state machine and the one function that runs it."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING

from agents.selection import nodes
from agents.selection.result import SelectionResult
from agents.selection.state import SelectionContext, SelectionState

if TYPE_CHECKING:
    from graph.universal import UniversalGraph
    from tools.settings import Settings
    from tools.tracing import TraceWriter

AGENT = "selection"


@lru_cache(maxsize=1)
def build_graph():
    """parse → analyse → embed_queries → find_checkpoints → find_loras → [filter] →
    assemble."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(SelectionState, context_schema=SelectionContext)
    builder.add_node("parse", nodes.parse)
    builder.add_node("analyse", nodes.analyse)
    builder.add_node("embed_queries", nodes.embed_queries)
    builder.add_node("find_checkpoints", nodes.find_checkpoints)
    builder.add_node("find_loras", nodes.find_loras)
    builder.add_node("filter", nodes.filter_candidates)
    builder.add_node("assemble", nodes.assemble)
    builder.add_edge(START, "parse")
    builder.add_edge("parse", "analyse")
    builder.add_edge("analyse", "embed_queries")
    builder.add_edge("embed_queries", "find_checkpoints")
    builder.add_edge("find_checkpoints", "find_loras")
    builder.add_conditional_edges("find_loras", nodes.route_after_retrieval)
    builder.add_edge("filter", "assemble")
    builder.add_edge("assemble", END)
    return builder.compile()


def make_context(
    settings: Settings, graph: UniversalGraph, tracer: TraceWriter | None = None
) -> SelectionContext:
    """The run context from the application settings: chat model (or None), a trace
    writer under ``settings.traces_dir`` and, for ``selection.retriever`` ``autolora`` /
    ``both``, the AutoLoRA weight-embedding retriever."""
    from tools.llm import make_chat_model
    from tools.tracing import TraceWriter

    retriever = None
    if settings.selection.retriever != "description":
        from tools.autolora.retrieval import make_retriever

        retriever = make_retriever(settings, graph)
    return SelectionContext(
        graph=graph,
        settings=settings.selection,
        model=make_chat_model(settings.llm),
        llm=settings.llm,
        tracer=tracer or TraceWriter.from_settings(settings, AGENT),
        lora_retriever=retriever,
    )


def select(prompt: str, ctx: SelectionContext) -> SelectionResult:
    """Choose the experts to merge for ``prompt`` (paper §3.2); the run is traced."""
    tracer = ctx.tracer
    start = time.perf_counter()
    if tracer is not None:
        tracer.run_start(
            {"prompt": prompt},
            family=ctx.settings.family.value,
            llm="configured" if ctx.model is not None else "none (no-LLM policy)",
            settings=ctx.settings.model_dump(mode="json"),
        )
    try:
        final = build_graph().invoke({"prompt": prompt}, context=ctx)
    except Exception as exc:
        if tracer is not None:
            tracer.event("run_end", error=exc)
            tracer.close()
        raise
    result = final["result"].model_copy(
        update={
            "latency_ms": round((time.perf_counter() - start) * 1000, 3),
            "run_id": tracer.run_id if tracer else None,
            "trace_path": str(tracer.path) if tracer else None,
        }
    )
    if tracer is not None:
        tracer.run_end(result, mode=result.mode, demo=result.demo)
    return result
