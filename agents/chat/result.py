"""What one chat turn did, as shown to the user and written to its trace."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from agents.chat.schemas import ChatMode, Interpreter, TurnDecision
from agents.chat.state import Conversation


class SavedFiles(BaseModel):
    """Files written by a save: images, recipe, exports and, when asked, the merged model."""

    folder: Path
    files: list[Path]
    merged_model: Path | None = None


class TurnReport(BaseModel):
    """One turn: how the message was read, what changed, and what was produced."""

    thread: str
    turn: int
    request: str
    decision: TurnDecision
    interpreter: Interpreter = Field(description="command | llm | rules | fallback")
    chat_mode: ChatMode = Field(description="llm: an LLM reads free text; no-llm: rules do")
    changes: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
    generated: bool = Field(False, description="this turn made new images (conversation.last)")
    saved: SavedFiles | None = None
    conversation: Conversation
    demo: bool = Field(False, description="the last images come from demo backends")
    run_id: str
    trace_path: Path
    generate_run_id: str | None = Field(None, description="the generation run of this turn")
    done: bool = False
