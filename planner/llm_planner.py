"""LLM-proposed merge weights behind the planner interface (a baseline of the paper).

The chat model proposes one coefficient per expert as a structured reply
(:class:`ProposedCoefficients`); a reply naming other experts, or not each expert once, is
retried with the error and then falls back to equal weights. With no LLM configured the
planner gives equal weights directly and its plans say ``mode: "no-llm"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, Field

from planner.planners import PlanRequest, PlanResult
from planner.prompts import weights_messages

if TYPE_CHECKING:
    from tools.settings import LLMSettings
    from tools.tracing import TraceWriter

# Expert ids → the text describing each (the expert's registered skill description).
Describer = Callable[[Sequence[str]], list[str]]


class ExpertCoefficient(BaseModel):
    expert_id: str
    coefficient: float = Field(ge=0.0, le=1.0)
    reason: str = Field("", max_length=500)


class ProposedCoefficients(BaseModel):
    """One coefficient in [0, 1] for every expert of the request."""

    coefficients: list[ExpertCoefficient] = Field(min_length=1)
    rationale: str = Field("", max_length=2000)


class LLMPlanner:
    """Coefficients proposed by the chat model (``model`` None: the no-LLM policy)."""

    name = "llm"

    def __init__(
        self,
        model,
        describe: Describer,
        settings: LLMSettings | None = None,
        tracer: TraceWriter | None = None,
    ) -> None:
        self.model = model
        self.describe = describe
        self.max_retries = settings.max_schema_retries if settings else 1
        self.method = settings.structured_method if settings else "json_schema"
        self.tracer = tracer

    def plan(self, request: PlanRequest) -> PlanResult:
        from tools.llm import structured_call

        sub = request.subgraph
        ids = list(sub.expert_ids)

        def check(reply: ProposedCoefficients) -> None:
            named = [c.expert_id for c in reply.coefficients]
            if sorted(named) != sorted(ids):
                raise ValueError(
                    f"give each of the experts {ids} exactly one coefficient; the reply named "
                    f"{named}"
                )

        def equal() -> ProposedCoefficients:
            return ProposedCoefficients(
                coefficients=[ExpertCoefficient(expert_id=i, coefficient=0.5) for i in ids],
                rationale="equal weights (no-LLM policy)",
            )

        messages = weights_messages(request.prompt, ids, sub.expert_kinds, self.describe(ids))
        result = structured_call(
            self.model,
            ProposedCoefficients,
            messages,
            fallback=equal,
            tracer=self.tracer,
            node="plan_weights",
            max_retries=self.max_retries,
            method=self.method,
            check=check,
        )
        by_id = {c.expert_id: c.coefficient for c in result.value.coefficients}
        coefficients = torch.tensor([by_id[i] for i in ids])
        if result.mode == "llm":
            mode, notes = "llm", []
        elif result.mode == "no-llm":
            mode, notes = "no-llm", ["no LLM configured: equal weights (no-LLM policy)"]
        else:
            mode = "llm-fallback"
            notes = [f"LLM reply unusable ({result.error}): equal weights (no-LLM policy)"]
        return PlanResult.from_coefficients(request, self.name, mode, coefficients, notes=notes)
