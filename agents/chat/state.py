"""Typed state of the conversation graph (with its reducers), its views, and the run context.

The state is checkpointed in SQLite after every node, so it holds plain JSON only: records
are stored as ``model_dump(mode="json")`` dicts and read back through the views below.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from pydantic import BaseModel, Field

from agents.chat.schemas import ChatMode, Interpreter
from agents.pipeline.pipeline import GenerateOptions, PipelineContext
from agents.pipeline.recipe import Recipe
from tools.settings import LLMSettings
from tools.tracing import Mode, TraceWriter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


class Generation(BaseModel):
    """The latest images of a thread, their recipe, and where they were written."""

    turn: int
    recipe: Recipe
    images: list[Path]
    recipe_path: Path
    trace_path: Path | None = None
    reused_selection: bool = Field(
        False, description="the experts come from the last selection (same prompt)"
    )


class Conversation(BaseModel):
    """What a thread remembers between turns (and across sessions)."""

    thread: str
    turn: int = 0
    prompt: str | None = None
    pinned: list[str] = Field(default_factory=list)
    banned: list[str] = Field(default_factory=list)
    seed: int = 0
    max_loras: int | None = Field(None, description="LoRA bound; None: the selection decides")
    last: Generation | None = None

    @classmethod
    def of(cls, state: ChatState) -> Conversation:
        return cls.model_validate({k: state[k] for k in cls.model_fields if k in state})


class ChatState(TypedDict, total=False):
    # remembered across turns
    thread: str
    turn: Annotated[int, operator.add]
    prompt: str | None
    pinned: list[str]
    banned: list[str]
    seed: int
    max_loras: int | None
    last: dict[str, Any] | None  # Generation
    selection: dict[str, Any] | None  # the SelectionResult of the last generation
    history: Annotated[list[dict[str, Any]], operator.add]  # one entry per completed turn
    # this turn (reset by ``interpret``)
    request: str
    decision: dict[str, Any]  # TurnDecision
    interpreter: Interpreter
    mode: Mode | None
    changes: list[str]
    notes: list[str]
    error: str | None
    generated: bool
    saved: dict[str, Any] | None  # SavedFiles
    done: bool


@dataclass
class ChatContext:
    """What the nodes need: the loaded pipeline, generation defaults, the LLM, the tracer."""

    pipeline: PipelineContext
    options: GenerateOptions = field(default_factory=GenerateOptions)
    out_dir: Path = Path("out") / "chat"
    model: BaseChatModel | None = None
    llm: LLMSettings = field(default_factory=LLMSettings)
    tracer: TraceWriter | None = None

    @property
    def chat_mode(self) -> ChatMode:
        return "llm" if self.model is not None else "no-llm"
