"""Records of a crawl: its request, the LLM's skill summary, candidates, outcomes, report."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from graph.records import BaseFamily
from tools.platforms.records import PlatformModel

SourceName = Literal["civitai", "huggingface", "local", "demo"]
ExpertType = Literal["lora", "checkpoint"]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]

DESCRIPTION_MAX = 600


class SkillSummary(BaseModel):
    """What an expert is good at, for retrieval (the LLM's structured output)."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(
        min_length=20,
        max_length=DESCRIPTION_MAX,
        description="2-3 plain sentences on what the expert generates well: subjects, style, "
        "look; no marketing, no links, no instructions",
    )
    subjects: list[Short] = Field(default_factory=list, max_length=8)
    styles: list[Short] = Field(default_factory=list, max_length=8)
    visual_attributes: list[Short] = Field(
        default_factory=list, max_length=8, description="lighting, detail, colour, texture"
    )
    trigger_words: list[Short] = Field(default_factory=list, max_length=10)
    recommended_weight: float | None = Field(None, ge=-2.0, le=2.0)
    base_model: Literal["sd15", "sdxl", "flux1", "unknown"] = "unknown"


class CrawlRequest(BaseModel):
    """What one crawl session does (validated once, stored in the checkpointed state)."""

    model_config = ConfigDict(extra="forbid")

    source: SourceName
    base: BaseFamily = BaseFamily.SD15
    types: list[ExpertType] = Field(default_factory=lambda: ["lora", "checkpoint"], min_length=1)
    max_experts: int = Field(50, ge=1, le=100_000)
    max_download_bytes: int = Field(20 * 2**30, ge=0)
    time_budget_s: float = Field(2 * 3600.0, gt=0)
    calibrate: bool = True
    platform_url: str | None = None
    local_paths: list[str] = Field(default_factory=list)
    lookup: bool = Field(
        False, description="local: look each file's SHA-256 up on Civitai (sends the hashes)"
    )
    sort: str = "Highest Rated"

    def session_key(self) -> str:
        """What identifies "the same crawl" for resuming (limits may change between runs)."""
        import hashlib

        ident = [self.source, self.base.value, sorted(self.types), self.platform_url]
        ident.append(sorted(self.local_paths))
        return hashlib.sha1(repr(ident).encode()).hexdigest()[:12]


class Candidate(BaseModel):
    """An upstream model version to register: a new expert or a new version of one."""

    model_config = ConfigDict(extra="forbid")

    expert_id: str
    action: Literal["new", "update"]
    old_id: str | None = None
    model: PlatformModel = Field(description="the upstream model with only the chosen version")


OutcomeStatus = Literal["registered", "updated", "deprecated", "reactivated", "skipped", "failed"]


class Outcome(BaseModel):
    """What happened to one candidate (or one expert deprecated upstream)."""

    model_config = ConfigDict(extra="forbid")

    item: str = Field(description="expert id, or the upstream item when none was made")
    name: str = ""
    status: OutcomeStatus
    reason: str | None = None
    supersedes: str | None = None
    description_origin: str | None = None
    page_origin: str | None = None
    calibration_edges: int = 0
    calibration_demo: bool = Field(False, description="calibrated on demo backends")
    downloaded_bytes: int = 0


class CrawlReport(BaseModel):
    """The end-of-session summary."""

    model_config = ConfigDict(extra="forbid")

    session: str
    source: SourceName
    base: BaseFamily
    demo: bool = Field(description="True when the experts come from the demo catalogue")
    registered: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    deprecated: list[str] = Field(default_factory=list)
    reactivated: list[str] = Field(
        default_factory=list, description="experts removed earlier and found again"
    )
    skipped: list[Outcome] = Field(default_factory=list)
    failed: list[Outcome] = Field(default_factory=list)
    up_to_date: int = 0
    calibration_edges: int = 0
    calibration_demo: bool = Field(
        False, description="True when calibration ran on demo backends (tiny models, scorers)"
    )
    downloaded_bytes: int = 0
    llm_summaries: int = 0
    no_llm_summaries: int = 0
    listing_complete: bool = False
    stopped_by: str | None = Field(None, description="time budget / max experts, when hit")
    notes: list[str] = Field(default_factory=list)
