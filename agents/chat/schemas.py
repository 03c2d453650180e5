"""The one LLM decision of a chat turn: what the user's message asks for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

Action = Literal[
    "new_prompt",
    "refine",
    "fewer_experts",
    "more_experts",
    "set_loras",
    "pin",
    "ban",
    "unpin",
    "unban",
    "seed",
    "redraw",
    "show",
    "save",
    "help",
    "quit",
]
# How a message was read: a slash command, the LLM, the no-LLM rules, or the rules after
# the LLM failed.
Interpreter = Literal["command", "llm", "rules", "fallback"]
ChatMode = Literal["llm", "no-llm"]
MAX_PROMPT_CHARS = 2000
MAX_IDS = 16


class TurnDecision(BaseModel):
    """The action a message asks for and its arguments (from the LLM, the rules or a command)."""

    reasoning: str = Field(
        "", max_length=1000, description="one or two sentences: what the user wants"
    )
    action: Action
    prompt: str | None = Field(
        None,
        max_length=MAX_PROMPT_CHARS,
        description="new_prompt / refine: the complete image prompt to draw from now on",
    )
    expert_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_IDS,
        description="pin / ban / unpin / unban: expert ids copied exactly from the session",
    )
    seed: int | None = Field(None, ge=0, lt=2**62, description="seed: the number the user gave")
    max_loras: int | None = Field(
        None, ge=0, le=32, description="fewer_experts / more_experts / set_loras: a LoRA count"
    )
    path: str | None = Field(
        None, max_length=1000, description="save: the folder the user wrote, copied exactly"
    )
    merged: bool = Field(False, description="save: also write the merged model file")

    @field_validator("prompt")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None
