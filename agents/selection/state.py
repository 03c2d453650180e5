"""Typed state of the selection graph (with its reducers) and the injected run context."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypedDict

import numpy as np
from pydantic import BaseModel, Field

from agents.prompt_syntax import ParsedPrompt
from agents.selection.result import (
    Component,
    DroppedCandidate,
    SelectedExpert,
    SelectionResult,
    TagMatch,
)
from graph.records import BaseFamily, Expert, ExpertKind
from tools.settings import LLMSettings, SelectionSettings
from tools.tracing import Mode, TraceWriter

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from graph.universal import UniversalGraph


class Candidate(BaseModel):
    """An expert found by retrieval, with its similarity to each query that found it."""

    id: str
    name: str
    kind: ExpertKind
    description: str
    trigger_words: list[str] = Field(default_factory=list)
    matches: dict[str, float] = Field(description="query (summary or attribute) -> cosine")
    prompt_similarity: float = 0.0
    demo: bool = False

    @property
    def similarity(self) -> float:
        return max(self.matches.values())

    def selected(self, reason: str) -> SelectedExpert:
        return SelectedExpert(
            id=self.id,
            name=self.name,
            kind=self.kind,
            reason=reason,
            similarity=round(self.similarity, 4),
            attributes=sorted(self.matches, key=self.matches.get, reverse=True),
            trigger_words=self.trigger_words,
            demo=self.demo,
        )


class Analysis(BaseModel):
    """Summary and decomposition (steps 1 and 3), from the LLM or the no-LLM policy."""

    summary: str
    components: list[Component]
    avoid: list[str] = Field(
        default_factory=list, description="what the prompt rules out: negated phrases, negatives"
    )

    @property
    def attributes(self) -> list[str]:
        seen: dict[str, str] = {}
        for component in self.components:
            for attribute in component.attributes:
                seen.setdefault(attribute.lower(), attribute)
        return list(seen.values())


def merge_dicts(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {**left, **right}


class SelectionState(TypedDict, total=False):
    prompt: str
    parsed: ParsedPrompt
    negative: list[str]  # phrases of the prompt's "Negative prompt:" text
    requested: list[SelectedExpert]  # experts named by <lora:...> tags
    tag_matches: list[TagMatch]
    analysis: Analysis
    query_vectors: list[np.ndarray]  # the summary's, then one per attribute
    avoid_vectors: list[np.ndarray]  # one per phrase of what the prompt rules out
    checkpoint_candidates: list[Candidate]
    lora_candidates: list[Candidate]
    kept: list[SelectedExpert]  # after filtering, before bounds and guards
    result: SelectionResult
    dropped: Annotated[list[DroppedCandidate], operator.add]
    unknown_ids: Annotated[list[str], operator.add]
    warnings: Annotated[list[str], operator.add]
    step_modes: Annotated[dict[str, Mode], merge_dicts]
    llm_requests: Annotated[int, operator.add]


class LoraRetriever(Protocol):
    """A second LoRA retriever (``selection.retriever`` ``autolora`` / ``both``), e.g.
    :class:`tools.autolora.retrieval.AutoLoraRetriever`: its vectors share the space of
    the query embeddings."""

    name: str
    note: str | None

    def search(
        self, query: np.ndarray, k: int, family: BaseFamily
    ) -> list[tuple[Expert, float]]: ...

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]: ...


@dataclass
class SelectionContext:
    """What the nodes need, built by :func:`agents.selection.graph.make_context` (or a test)."""

    graph: UniversalGraph
    settings: SelectionSettings = field(default_factory=SelectionSettings)
    model: BaseChatModel | None = None
    llm: LLMSettings = field(default_factory=LLMSettings)
    tracer: TraceWriter | None = None
    lora_retriever: LoraRetriever | None = None


@dataclass(frozen=True)
class Runtime:
    """What a node receives besides the state (the shape of LangGraph's ``Runtime``)."""

    context: SelectionContext
