"""Typed state of the construction graph (with its reducers) and the injected run context.

The state is checkpointed after every node (SQLite), so it holds plain JSON only:
records are stored as ``model_dump(mode="json")`` dicts and rebuilt in the nodes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from agents.construction.tools import Calibrator, ExpertSource
    from graph.universal import UniversalGraph
    from tools.platforms.downloads import DownloadPolicy
    from tools.platforms.homepage import HomepageFetcher
    from tools.settings import LLMSettings
    from tools.tracing import TraceWriter


class WorkItem(TypedDict, total=False):
    """The candidate in progress; each node adds its result."""

    candidate: dict[str, Any]  # schemas.Candidate
    page: dict[str, Any]  # platforms.records.PageText
    summary: dict[str, Any]  # schemas.SkillSummary
    summary_mode: str  # "llm" | "no-llm" | "fallback"
    expert: dict[str, Any]  # graph.records.Expert, ready to register
    embedding: list[float]
    file: dict[str, Any]  # platforms.records.DownloadedFile
    calibration: dict[str, Any]  # {"edges": int, "metrics": [...]} once calibrated
    edges_written: int
    skip: str  # why the candidate is left out (not an error)
    fail: str  # why the candidate failed (an error)


class CrawlState(TypedDict, total=False):
    request: dict[str, Any]  # schemas.CrawlRequest
    session: str
    queue: list[dict[str, Any]]  # schemas.Candidate, in processing order
    position: int  # index of the next candidate in ``queue``
    current: WorkItem | None
    outcomes: Annotated[list[dict[str, Any]], operator.add]  # schemas.Outcome
    removed: list[str]  # active expert ids whose upstream model is gone
    revived: list[dict[str, Any]]  # {"id", "path"}: experts found again (or at a new path)
    up_to_date: int
    listing_complete: bool
    notes: Annotated[list[str], operator.add]
    downloaded_bytes: Annotated[int, operator.add]
    active_s: Annotated[float, operator.add]  # time spent in nodes (survives restarts)
    stopped_by: str | None
    report: dict[str, Any]  # schemas.CrawlReport


@dataclass
class CrawlContext:
    """Side effects of a crawl, built by factories and injected (never checkpointed)."""

    graph: UniversalGraph
    source: ExpertSource
    fetcher: HomepageFetcher
    model: BaseChatModel | None
    llm: LLMSettings
    weights_dir: Path
    download: DownloadPolicy
    calibrator: Calibrator | None = None
    tracer: TraceWriter | None = None
