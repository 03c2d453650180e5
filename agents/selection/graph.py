"""The selection state machine and the one function that runs it.

parse → analyse → embed_queries → find_checkpoints → find_loras → [filter] → assemble.
The machine is a fixed pipeline with one branch, so it runs here as plain calls with
LangGraph's semantics (each node returns a partial update; state keys annotated with a
reducer accumulate) rather than through LangGraph, whose import alone costs a cold
``diffgraph select`` about 1.7 s of CPU (issue 15).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin, get_type_hints

from agents.selection import nodes
from agents.selection.result import SelectionResult
from agents.selection.state import Runtime, SelectionContext, SelectionState

if TYPE_CHECKING:
    from graph.universal import UniversalGraph
    from tools.settings import Settings
    from tools.tracing import TraceWriter

AGENT = "selection"
PIPELINE = (
    nodes.parse,
    nodes.analyse,
    nodes.embed_queries,
    nodes.find_checkpoints,
    nodes.find_loras,
)


def run(prompt: str, ctx: SelectionContext) -> SelectionState:
    """The final state of one pass through the machine."""
    reducers = _reducers()
    state: dict[str, Any] = {key: empty() for key, (_, empty) in reducers.items()}
    state["prompt"] = prompt
    runtime = Runtime(ctx)
    for node in PIPELINE:
        _apply(state, node(state, runtime), reducers)
    if nodes.route_after_retrieval(state) == "filter":
        _apply(state, nodes.filter_candidates(state, runtime), reducers)
    _apply(state, nodes.assemble(state, runtime), reducers)
    return state


@lru_cache(maxsize=1)
def _reducers() -> dict[str, tuple[Callable[[Any, Any], Any], Callable[[], Any]]]:
    """Key -> (reducer, empty value) of each state key annotated with a reducer, read as
    LangGraph reads them: ``Annotated[list[X], operator.add]`` starts from ``list()``."""
    out = {}
    for key, hint in get_type_hints(SelectionState, include_extras=True).items():
        if get_origin(hint) is Annotated:
            base, reducer = get_args(hint)[:2]
            out[key] = (reducer, get_origin(base) or base)
    return out


def _apply(state: dict[str, Any], update: dict[str, Any], reducers: dict) -> None:
    for key, value in update.items():
        state[key] = reducers[key][0](state[key], value) if key in reducers else value


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
        final = run(prompt, ctx)
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
