"""The typed result of one selection run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from graph.records import BaseFamily, ExpertKind
from tools.tracing import Mode

DropStage = Literal["filter", "redundant", "negative", "bound", "guard"]


class Component(BaseModel):
    name: str
    attributes: list[str]


class SelectedExpert(BaseModel):
    id: str
    name: str
    kind: ExpertKind
    reason: str
    source: Literal["retrieval", "prompt-tag"] = "retrieval"
    similarity: float | None = Field(None, description="best cosine similarity to a query")
    attributes: list[str] = Field(default_factory=list, description="queries that found it")
    weight: float | None = Field(None, description="weight given in the prompt's <lora:...> tag")
    trigger_words: list[str] = Field(default_factory=list)
    demo: bool = False


class DroppedCandidate(BaseModel):
    id: str
    name: str
    kind: ExpertKind
    reason: str
    stage: DropStage
    similarity: float | None = None

    @classmethod
    def of(cls, item: Any, reason: str, stage: DropStage) -> DroppedCandidate:
        """``item`` (a candidate or a selected expert) dropped for ``reason``."""
        similarity = item.similarity
        return cls(
            id=item.id,
            name=item.name,
            kind=item.kind,
            reason=reason,
            stage=stage,
            similarity=None if similarity is None else round(similarity, 4),
        )


class TagMatch(BaseModel):
    """An explicit ``<lora:name:weight>`` tag and the expert it names, if any."""

    tag: str
    name: str
    weight: float
    expert_id: str | None = None
    note: str = ""


class SelectionResult(BaseModel):
    """Experts to merge for one prompt, with the reason for every choice and every drop.

    ``base_model`` is True when no checkpoint expert was selected: the checkpoint of the
    merge is then the family's configured base model (``Settings.base_model``), which is
    not a node of the graph.
    """

    prompt: str
    text: str = Field(description="the prompt as plain text (A1111 syntax removed)")
    family: BaseFamily
    mode: Mode = Field(description="llm | no-llm | fallback (some LLM step fell back)")
    step_modes: dict[str, Mode] = Field(default_factory=dict)
    summary: str
    components: list[Component] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)
    avoid: list[str] = Field(
        default_factory=list,
        description="what the prompt rules out (negated phrases, negative prompt): experts "
        "these phrases would select are not selected",
    )
    checkpoints: list[SelectedExpert] = Field(default_factory=list)
    loras: list[SelectedExpert] = Field(default_factory=list)
    base_model: bool = False
    dropped: list[DroppedCandidate] = Field(default_factory=list)
    unknown_ids: list[str] = Field(
        default_factory=list, description="ids the LLM returned that were not candidates"
    )
    lora_tags: list[TagMatch] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    llm_requests: int = 0
    latency_ms: float = 0.0
    run_id: str | None = None
    trace_path: str | None = None
    demo: bool = Field(False, description="some selected expert comes from a demo catalogue")

    @property
    def expert_ids(self) -> list[str]:
        """Checkpoint ids then LoRA ids: the experts the planner weighs."""
        return [e.id for e in self.checkpoints] + [e.id for e in self.loras]
