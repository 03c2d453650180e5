"""The conversation graph, chat threads that resume by id, and the context factory.

A thread is one LangGraph thread in ``<data_dir>/chat/threads.sqlite``; each turn is one
run of the graph and writes one trace (agent ``chat``). A turn either completes or leaves
the thread as it was before it (an error, Ctrl-C, or a killed process mid-turn).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.chat import nodes
from agents.chat.errors import ChatError
from agents.chat.result import TurnReport
from agents.chat.schemas import TurnDecision
from agents.chat.state import ChatContext, ChatState, Conversation

if TYPE_CHECKING:
    from agents.pipeline.pipeline import GenerateOptions, PipelineContext
    from tools.settings import Settings

AGENT = "chat"
_THREAD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def build_graph(checkpointer: Any = None):
    """interpret → apply → generate → finish; interpret → save → finish; interpret → finish
    (show, help, quit); apply → finish when nothing changed."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(ChatState, context_schema=ChatContext)
    for name in ("interpret", "apply", "generate", "save", "finish"):
        builder.add_node(name, getattr(nodes, name))
    builder.add_edge(START, "interpret")
    builder.add_conditional_edges("interpret", nodes.after_interpret)
    builder.add_conditional_edges("apply", nodes.after_apply)
    builder.add_edge("generate", "finish")
    builder.add_edge("save", "finish")
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=checkpointer)


def threads_path(settings: Settings) -> Path:
    """The SQLite file holding every chat thread."""
    return settings.data_dir / "chat" / "threads.sqlite"


def thread_id(thread: str | None = None) -> str:
    """``thread`` checked as a thread id (it names a folder), or a new id when None."""
    if thread is None:
        return f"chat-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    if not _THREAD.match(thread):
        raise ChatError(
            f"thread id {thread!r} is not valid: use up to 64 letters, digits, '.', '_' or '-'"
        )
    return thread


def make_context(
    pipeline: PipelineContext, out_dir: Path, options: GenerateOptions | None = None
) -> ChatContext:
    """The chat's context: the loaded pipeline, its settings' LLM (or None) and defaults."""
    from agents.pipeline.pipeline import GenerateOptions
    from tools.llm import make_chat_model

    settings = pipeline.settings
    return ChatContext(
        pipeline=pipeline,
        options=options or GenerateOptions(),
        out_dir=Path(out_dir),
        model=make_chat_model(settings.llm),
        llm=settings.llm,
    )


class ChatSession:
    """One open thread; :meth:`turn` runs the graph once per user message."""

    def __init__(self, graph: Any, ctx: ChatContext, thread: str, resumed: bool) -> None:
        self.graph = graph
        self.ctx = ctx
        self.thread = thread
        self.resumed = resumed
        self.config = {"configurable": {"thread_id": thread}}

    def conversation(self) -> Conversation:
        return Conversation.of(self.graph.get_state(self.config).values)

    def turn(self, message: str) -> TurnReport:
        """Interpret ``message``, update the conversation, generate or act; traced."""
        from tools.tracing import TraceWriter

        tracer = TraceWriter.from_settings(self.ctx.pipeline.settings, AGENT)
        before = self.graph.get_state(self.config)
        tracer.run_start(
            {"request": message},
            thread=self.thread,
            turn=before.values.get("turn", 0) + 1,
            chat_mode=self.ctx.chat_mode,
            llm=self.ctx.llm.model if self.ctx.model is not None else "none (no-LLM rules)",
        )
        try:
            values = self.graph.invoke(
                {"request": message}, self.config, context=replace(self.ctx, tracer=tracer)
            )
        except BaseException as exc:
            self.graph.update_state(before.config, None)  # the thread as before the turn
            tracer.event("run_end", error=exc, data={"thread": self.thread, "rolled_back": True})
            tracer.close()
            raise
        report = self._report(values, tracer)
        mode = values.get("mode") or ("no-llm" if self.ctx.model is None else None)
        tracer.run_end(
            report.model_dump(mode="json"),
            mode=mode,
            thread=self.thread,
            generate_run_id=report.generate_run_id,
            demo=report.demo,
        )
        return report

    def _report(self, values: dict[str, Any], tracer: Any) -> TurnReport:
        conversation = Conversation.of(values)
        generated = bool(values.get("generated"))
        last = conversation.last
        return TurnReport(
            thread=self.thread,
            turn=conversation.turn,
            request=values["request"],
            decision=TurnDecision.model_validate(values["decision"]),
            interpreter=values["interpreter"],
            chat_mode=self.ctx.chat_mode,
            changes=values.get("changes") or [],
            notes=values.get("notes") or [],
            error=values.get("error"),
            generated=generated,
            saved=values.get("saved"),
            conversation=conversation,
            demo=bool(last and last.recipe.demo),
            run_id=tracer.run_id,
            trace_path=tracer.path,
            generate_run_id=last.recipe.run_id if generated and last else None,
            done=bool(values.get("done")),
        )


@contextmanager
def open_session(
    path: Path, ctx: ChatContext, thread: str | None = None, seed: int | None = None
) -> Iterator[ChatSession]:
    """Open (or create) ``thread`` in the SQLite file ``path``; a new id when None.

    ``seed`` is the first seed of a new thread, or replaces a resumed thread's seed.
    """
    from langgraph.checkpoint.sqlite import SqliteSaver

    thread = thread_id(thread)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with SqliteSaver.from_conn_string(str(path)) as saver:
        graph = build_graph(saver)
        config = {"configurable": {"thread_id": thread}}
        snapshot = graph.get_state(config)
        resumed = bool(snapshot.values)
        if not resumed:
            initial = {"thread": thread, "seed": seed or 0, "pinned": [], "banned": []}
            graph.update_state(config, initial, as_node="finish")
        else:
            if snapshot.tasks:  # a process died mid-turn: back to the end of the last turn
                complete = next(s for s in graph.get_state_history(config) if not s.tasks)
                graph.update_state(complete.config, None)
            if seed is not None:
                graph.update_state(config, {"seed": seed}, as_node="finish")
        yield ChatSession(graph, replace(ctx), thread, resumed)
