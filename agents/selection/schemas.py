"""The LLM decisions of the selection agent, each a pydantic schema (paper §3.2)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class ComponentNeeds(BaseModel):
    """One semantic component of the prompt and the visual attributes needed to depict it."""

    component: str = Field(
        min_length=1, max_length=80, description="a character, object, scene or style"
    )
    attributes: list[str] = Field(
        min_length=1,
        max_length=6,
        description="short English noun phrases, e.g. 'red hair', 'eye detail', 'rim lighting'",
    )

    @field_validator("attributes")
    @classmethod
    def _clean(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values if v.strip()]
        if not cleaned:
            raise ValueError("every component needs at least one non-blank attribute")
        if any(len(v) > 80 for v in cleaned):
            raise ValueError("attributes must be short phrases of at most 80 characters")
        return cleaned


class PromptAnalysis(BaseModel):
    """Steps 1 and 3 in one call: the summary and the step-by-step decomposition."""

    reasoning: str = Field(
        "",
        max_length=2000,
        description="think step by step: the subject, the scene, the style, what each needs",
    )
    summary: str = Field(
        min_length=1,
        max_length=300,
        description="one English sentence: the main subject and the overall style",
    )
    components: list[ComponentNeeds] = Field(min_length=1, max_length=12)
    avoid: list[str] = Field(
        default_factory=list,
        max_length=12,
        description="short English phrases of what the prompt rules out ('no neon' -> 'neon')",
    )


class Verdict(BaseModel):
    id: str = Field(min_length=1, max_length=200, description="a candidate id, copied exactly")
    keep: bool
    reason: str = Field(min_length=1, max_length=300)


class FilterDecision(BaseModel):
    """Step 5: which candidates fit the parsed needs (the counts are decided here)."""

    reasoning: str = Field("", max_length=2000)
    verdicts: list[Verdict] = Field(max_length=200)
