"""Nodes of the construction graph: each returns a partial state update.

discover → (per candidate: fetch_homepage → summarise → embed → download → register →
calibrate → write_edges → finish_item) → deprecate_removed → report.

A node whose candidate cannot go on sets ``current.skip`` / ``current.fail``; the routers
then send it to ``finish_item``. Every node is safe to run again after a kill: downloads
resume, registration checks the store first, calibration skips measured pairs.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
from langgraph.runtime import Runtime

from agents.construction.policy import deterministic_summary
from agents.construction.prompts import summary_messages
from agents.construction.schemas import (
    Candidate,
    CrawlReport,
    CrawlRequest,
    Outcome,
    SkillSummary,
)
from agents.construction.state import CrawlContext, CrawlState, WorkItem
from agents.construction.tools import expert_id, kinds_of, weights_folder
from graph.errors import GraphError
from graph.records import Calibration, Expert, ExpertKind, ExpertStatus, Source, WeightFile
from graph.universal import node_text
from tools.platforms.errors import PlatformError, TimeBudgetError
from tools.platforms.records import DownloadedFile, PageText, PlatformModel, Skipped

log = logging.getLogger(__name__)

_URL = re.compile(r"https?://|www\.", re.I)


# Nodes of one candidate: an error in any of them fails that candidate alone (recorded with
# its reason by ``finish_item``), and the later ones pass a failed or skipped candidate on.
_ITEM_NODES = frozenset(
    {"fetch_homepage", "summarise", "embed", "download", "register", "calibrate", "write_edges"}
)


def _node(fn: Callable[[CrawlState, CrawlContext], dict]) -> Callable:
    """Run ``fn`` with the injected context; add its time to ``active_s``; trace it."""
    name = fn.__name__

    def run(state: CrawlState, runtime: Runtime[CrawlContext]) -> dict:
        ctx = runtime.context
        current = state.get("current") or {}
        if name in _ITEM_NODES and (current.get("fail") or current.get("skip")):
            return {"active_s": 0.0}  # on to finish_item
        start = time.perf_counter()
        try:
            update = fn(state, ctx)
        except Exception as exc:
            if ctx.tracer is not None:
                ctx.tracer.error(name, exc)
            if name not in _ITEM_NODES:
                raise
            log.warning("%s failed in %s: %s: %s", _item_name(state), name, type(exc).__name__, exc)
            update = _failed(state, name, exc)
        elapsed = time.perf_counter() - start
        if ctx.tracer is not None:
            ctx.tracer.node(
                name,
                inputs=_item_name(state),
                outputs=_brief(update),
                latency_ms=elapsed * 1000,
                data={"demo": ctx.source.demo},
            )
        return {**update, "active_s": elapsed}

    # no functools.wraps: LangGraph finds ``runtime`` in the wrapper's own signature
    run.__name__ = run.__qualname__ = name
    run.__doc__ = fn.__doc__
    return run


def _failed(state: CrawlState, node: str, exc: Exception) -> dict:
    """The update that fails the current candidate with ``exc`` as its reason."""
    current = state.get("current") or {"candidate": state["queue"][state["position"]]}
    reason = " ".join(f"{node}: {type(exc).__name__}: {exc}".split())[:500]
    return {"current": {**current, "fail": reason}}


def _item_name(state: CrawlState) -> str | None:
    current = state.get("current") or {}
    candidate = current.get("candidate")
    if candidate is None and state.get("position", 0) < len(state.get("queue") or []):
        candidate = state["queue"][state["position"]]
    return (candidate or {}).get("expert_id")


def _brief(update: dict) -> dict:
    """The update without bulky fields (embeddings, page text), for the trace."""
    out = dict(update)
    current = out.get("current")
    if isinstance(current, dict):
        current = {k: v for k, v in current.items() if k not in ("embedding", "candidate")}
        if "page" in current:
            current["page"] = {k: v for k, v in current["page"].items() if k != "text"}
        out["current"] = current
    if "queue" in out:
        out["queue"] = [c["expert_id"] for c in out["queue"]]
    return out


def _request(state: CrawlState) -> CrawlRequest:
    return CrawlRequest.model_validate(state["request"])


def _candidate(state: CrawlState) -> Candidate:
    return Candidate.model_validate(state["current"]["candidate"])


def _with(state: CrawlState, **fields) -> dict:
    return {"current": {**(state.get("current") or {}), **fields}}


# -- discovery ---------------------------------------------------------------------------


def _plan(
    model: PlatformModel,
    request: CrawlRequest,
    known: list[Expert],
    platform: str,
    allow_pickle: bool,
) -> Candidate | Outcome | None:
    """A candidate, a skip (Outcome) or None when the graph already has this version."""
    item = f"{platform} model {model.id} ({model.name})"

    def skip(reason: str) -> Outcome:
        return Outcome(item=item, name=model.name, status="skipped", reason=reason)

    if model.kind is None or model.kind not in kinds_of(request.types):
        return skip(f"type {model.type!r} is not one of {', '.join(request.types)}")
    if model.nsfw:
        return skip("marked NSFW")
    version = model.latest
    if version is None:
        return skip("no usable version")
    if version.base is not request.base:
        return skip(f"base model {version.base_model!r} is not {request.base.value}")
    file = version.weight_file()
    if file is None:
        return skip("no weight file")
    if file.format not in (None, "safetensors") and not (allow_pickle and file.format == "pickle"):
        return skip(f"weights are {file.format}, not safetensors (pickles need --allow-pickle)")
    chosen = model.model_copy(update={"versions": [version]})
    new_id = expert_id(platform, chosen)
    if any(e.id == new_id for e in known):
        return None
    if not known:
        return Candidate(expert_id=new_id, action="new", model=chosen)
    active = [e for e in known if e.is_active]
    old = (active or known)[-1]
    return Candidate(expert_id=new_id, action="update", old_id=old.id, model=chosen)


@_node
def discover(state: CrawlState, ctx: CrawlContext) -> dict:
    """List upstream models; plan new experts, new versions and removals."""
    request = _request(state)
    platform = ctx.source.platform
    kinds = kinds_of(request.types)
    known: dict[str, list[Expert]] = {}
    for expert in ctx.graph.experts(base=request.base):
        if expert.source.platform == platform and expert.kind in kinds and expert.source.model_id:
            known.setdefault(expert.source.model_id, []).append(expert)
    queue: list[Candidate] = []
    outcomes: list[Outcome] = []
    notes: list[str] = []
    seen: set[str] = set()
    revived: list[dict] = []
    up_to_date = 0
    complete = False
    stopped_by = None
    try:
        for item in ctx.source.iter_models(request.base, request.types):
            if isinstance(item, Skipped):
                outcomes.append(Outcome(item=item.item, status="skipped", reason=item.reason))
                continue
            seen.add(item.id)
            plan = _plan(item, request, known.get(item.id, []), platform, ctx.download.allow_pickle)
            if plan is None:
                up_to_date += 1
                revived += _revival(item, known.get(item.id, []), platform, ctx.source)
            elif isinstance(plan, Outcome):
                outcomes.append(plan)
            elif not any(c.expert_id == plan.expert_id for c in queue):
                queue.append(plan)
                if len(queue) >= request.max_experts:
                    stopped_by = f"max experts ({request.max_experts})"
                    break
        else:
            complete = True
    except PlatformError as exc:
        notes.append(f"the listing stopped early: {exc}")
    notes += ctx.source.notes
    removed: list[str] = []
    if complete:
        for model_id, experts in known.items():
            # only experts this listing covers (a local crawl: files under its folders)
            active = [e.id for e in experts if e.is_active and ctx.source.covers(e)]
            if model_id not in seen and active and not ctx.source.exists(model_id):
                removed.extend(active)
    elif known:
        notes.append("removals not checked: the listing was not read to its end")
    return {
        "queue": [c.model_dump(mode="json") for c in queue],
        "position": 0,
        "current": None,
        "outcomes": [o.model_dump(mode="json") for o in outcomes],
        "removed": removed,
        "revived": revived,
        "up_to_date": up_to_date,
        "listing_complete": complete,
        "notes": notes,
        "stopped_by": stopped_by,
    }


def _revival(item: PlatformModel, known: list[Expert], platform: str, source) -> list[dict]:
    """The known expert of ``item``'s version when the crawl retired it as removed upstream
    (found again: re-activate it), or when its local file moved (update the path)."""
    if item.latest is None:
        return []
    wanted = expert_id(platform, item.model_copy(update={"versions": [item.latest]}))
    found = getattr(source, "found_at", lambda _id: None)(item.id)
    out = []
    for expert in known:
        if expert.id != wanted:
            continue
        retired = not expert.is_active and (expert.status_reason or "").startswith(
            "removed upstream"
        )
        moved = bool(found and expert.file and expert.file.path != found)
        if retired or moved:
            out.append({"id": expert.id, "path": found if moved else None, "revive": retired})
    return out


def route_next(state: CrawlState) -> Literal["fetch_homepage", "deprecate_removed"]:
    """The next candidate while there is one and time is left."""
    request = _request(state)
    if state.get("position", 0) >= len(state.get("queue", [])):
        return "deprecate_removed"
    if state.get("active_s", 0.0) >= request.time_budget_s:
        return "deprecate_removed"
    return "fetch_homepage"


# -- one candidate -----------------------------------------------------------------------


@_node
def fetch_homepage(state: CrawlState, ctx: CrawlContext) -> dict:
    """The homepage text (rendered), or the API description when there is no browser."""
    candidate = Candidate.model_validate(state["queue"][state["position"]])
    model = candidate.model
    fallback = "\n".join(d for d in (model.description, model.versions[0].description) if d)
    page = ctx.fetcher.fetch(model.homepage_url, fallback or None)
    item: WorkItem = {
        "candidate": candidate.model_dump(mode="json"),
        "page": page.model_dump(mode="json"),
    }
    return {"current": item}


def _check_summary(model: PlatformModel, page: PageText, summary: SkillSummary) -> None:
    """Reject replies that carry links or markup, or trigger words nobody published."""
    if _URL.search(summary.description) or "<" in summary.description:
        raise ValueError("the description must be plain text without links or markup")
    published = " ".join([*model.versions[0].trained_words, page.text, model.name]).lower()
    for word in summary.trigger_words:
        if word.lower() not in published:
            raise ValueError(
                f"trigger word {word!r} appears nowhere in the platform facts or the page; "
                "give only published trigger words"
            )


@_node
def summarise(state: CrawlState, ctx: CrawlContext) -> dict:
    """The skill summary: LLM structured output, validated; else the no-LLM policy."""
    from tools.llm import structured_call

    model = _candidate(state).model
    page = PageText.model_validate(state["current"]["page"])
    result = structured_call(
        ctx.model,
        SkillSummary,
        summary_messages(model, page),
        fallback=lambda: deterministic_summary(model, page.text),
        tracer=ctx.tracer,
        node="summarise",
        max_retries=ctx.llm.max_schema_retries,
        method=ctx.llm.structured_method,
        check=functools.partial(_check_summary, model, page),
    )
    return _with(state, summary=result.value.model_dump(mode="json"), summary_mode=result.mode)


def _expert_name(model: PlatformModel) -> str:
    version = model.versions[0].name
    if model.platform in ("local", "huggingface") or not version:
        return model.name[:300]
    return f"{model.name} ({version})"[:300]


@_node
def embed(state: CrawlState, ctx: CrawlContext) -> dict:
    """The expert record and the embedding of its skill description (its node feature)."""
    request = _request(state)
    candidate = _candidate(state)
    model = candidate.model
    version = model.versions[0]
    summary = SkillSummary.model_validate(state["current"]["summary"])
    mode = state["current"]["summary_mode"]
    if summary.base_model not in ("unknown", request.base.value):
        log.info("%s: the summary says base %s; the platform's %s is kept",
                 candidate.expert_id, summary.base_model, request.base.value)  # fmt: skip
    weight = summary.recommended_weight
    expert = Expert(
        id=candidate.expert_id,
        kind=model.kind or ExpertKind.PEFT,
        base=request.base,
        name=_expert_name(model),
        description=summary.description,
        description_origin="llm" if mode == "llm" else "no-llm",
        trigger_words=summary.trigger_words or version.trained_words[:10],
        tags=model.tags[:32],
        subjects=summary.subjects,
        styles=summary.styles,
        visual_attributes=summary.visual_attributes,
        example_prompts=version.example_prompts[:8],
        recommended_weight=weight if weight is not None else version.recommended_weight,
        source=Source(
            platform=ctx.source.platform,
            url=model.homepage_url,
            model_id=model.id,
            version_id=version.id,
        ),
        license=model.license,
        published=version.published_at.date() if version.published_at else None,
        demo=model.demo or ctx.source.demo,
    )
    vector = ctx.graph.embedder.embed_one(node_text(expert))
    return _with(state, expert=expert.model_dump(mode="json"), embedding=[float(v) for v in vector])


@_node
def download(state: CrawlState, ctx: CrawlContext) -> dict:
    """The weight file: resumed, size- and disk-checked, verified against the platform hash."""
    request = _request(state)
    candidate = _candidate(state)
    file = candidate.model.versions[0].weight_file()
    size = file.size_bytes or 0
    spent = state.get("downloaded_bytes", 0)
    if file.local_path is None and spent + size > request.max_download_bytes:
        limit = request.max_download_bytes / 2**30
        return _with(state, skip=f"download budget of {limit:.2f} GB would be exceeded")
    dest = weights_folder(ctx.weights_dir, candidate.expert_id)
    left = request.time_budget_s - state.get("active_s", 0.0)  # honoured mid-download
    policy = ctx.download.model_copy(update={"deadline": time.monotonic() + max(left, 0.0)})
    try:
        got = ctx.source.fetch(file, dest, policy)
    except TimeBudgetError as exc:
        return _with(state, skip=f"time budget: {exc}")
    except PlatformError as exc:
        return _with(state, fail=str(exc))
    fetched = 0 if file.local_path else got.size_bytes
    return {**_with(state, file=got.model_dump(mode="json")), "downloaded_bytes": fetched}


def after_download(state: CrawlState) -> Literal["register", "finish_item"]:
    current = state.get("current") or {}
    return "finish_item" if current.get("skip") or current.get("fail") else "register"


@_node
def register(state: CrawlState, ctx: CrawlContext) -> dict:
    """Add the node (or the new version, deprecating the old one with history kept)."""
    candidate = _candidate(state)
    got = DownloadedFile.model_validate(state["current"]["file"])
    fmt = candidate.model.versions[0].weight_file().format or "safetensors"
    weights = WeightFile(path=got.path, sha256=got.sha256, format=fmt, size_bytes=got.size_bytes)
    expert = Expert.model_validate(state["current"]["expert"]).model_copy(update={"file": weights})
    embedding = np.asarray(state["current"]["embedding"], np.float32)
    store = ctx.graph.store
    if store.has_expert(expert.id):  # registered before a restart
        return _with(state, expert=store.expert(expert.id).model_dump(mode="json"))
    try:
        if candidate.action == "update" and store.has_expert(candidate.old_id):
            expert = ctx.graph.add_version(candidate.old_id, expert, embedding)
        else:
            ctx.graph.add_expert(expert, embedding)
    except GraphError as exc:
        return _with(state, fail=str(exc))
    return _with(state, expert=expert.model_dump(mode="json"))


def after_register(state: CrawlState) -> Literal["calibrate", "finish_item"]:
    current = state.get("current") or {}
    if current.get("fail") or not _request(state).calibrate:
        return "finish_item"
    return "calibrate"


@_node
def calibrate(state: CrawlState, ctx: CrawlContext) -> dict:
    """Generate and score images for the reference prompts (resumable)."""
    if ctx.calibrator is None:
        return _with(state, calibration={"edges": [], "error": "no calibrator configured"})
    expert = Expert.model_validate(state["current"]["expert"])
    try:
        scores = ctx.calibrator(expert)
    except Exception as exc:  # the expert stays registered, uncalibrated, and says why
        log.warning("calibrating %s failed: %s", expert.id, exc)
        return _with(state, calibration={"edges": [], "error": f"{type(exc).__name__}: {exc}"})
    edges = [c.model_dump(mode="json") for c in scores]
    return _with(state, calibration={"edges": edges, "demo": ctx.calibrator.demo})


@_node
def write_edges(state: CrawlState, ctx: CrawlContext) -> dict:
    """Write the calibration scores as expert × reference-prompt edges (idempotent)."""
    edges = [Calibration.model_validate(e) for e in state["current"]["calibration"]["edges"]]
    ctx.graph.set_calibrations(edges)
    return _with(state, edges_written=len(edges))


@_node
def finish_item(state: CrawlState, ctx: CrawlContext) -> dict:
    """Record the candidate's outcome and move to the next one."""
    current = state["current"]
    candidate = _candidate(state)
    expert = current.get("expert") or {}
    calibration = current.get("calibration") or {}
    reason = current.get("skip") or current.get("fail")
    if current.get("fail"):
        status = "failed"
    elif current.get("skip"):
        status = "skipped"
    else:
        status = "updated" if candidate.action == "update" else "registered"
        if calibration.get("error"):
            reason = f"not calibrated: {calibration['error']}"
    page = current.get("page") or {}
    outcome = Outcome(
        item=candidate.expert_id,
        name=candidate.model.name,
        status=status,
        reason=reason,
        supersedes=candidate.old_id if status == "updated" else None,
        description_origin=expert.get("description_origin"),
        page_origin=page.get("origin"),
        calibration_edges=current.get("edges_written", 0),
        calibration_demo=bool(calibration.get("demo")),
        downloaded_bytes=(current.get("file") or {}).get("size_bytes", 0),
    )
    log.debug("%s %s%s", status, candidate.expert_id, f" ({reason})" if reason else "")
    return {
        "outcomes": [outcome.model_dump(mode="json")],
        "position": state["position"] + 1,
        "current": None,
    }


# -- end of the session ------------------------------------------------------------------


@_node
def deprecate_removed(state: CrawlState, ctx: CrawlContext) -> dict:
    """Deprecate experts whose upstream model is gone (history kept, nothing retrained);
    re-activate the ones found again, and follow local files that moved."""
    outcomes = []
    for revival in state.get("revived", []):
        expert = ctx.graph.expert(revival["id"])
        update: dict = {}
        if revival["path"] and expert.file is not None:
            update["file"] = expert.file.model_copy(update={"path": revival["path"]})
        if revival["revive"] and not expert.is_active:
            update |= {"status": ExpertStatus.ACTIVE, "status_reason": None}
            outcomes.append(
                Outcome(
                    item=expert.id, name=expert.name, status="reactivated", reason="found again"
                ).model_dump(mode="json")
            )
        if update:
            ctx.graph.update_expert(expert.model_copy(update=update), reembed=False)
    for expert_id_ in state.get("removed", []):
        expert = ctx.graph.expert(expert_id_)
        if expert.is_active:
            ctx.graph.deprecate(expert_id_, f"removed upstream from {ctx.source.platform}")
        outcomes.append(
            Outcome(
                item=expert_id_, name=expert.name, status="deprecated", reason="removed upstream"
            ).model_dump(mode="json")
        )
    stopped_by = state.get("stopped_by")
    left = len(state.get("queue", [])) - state.get("position", 0)
    if left > 0:
        stopped_by = "time budget"
        outcomes += [
            Outcome(
                item=c["expert_id"], name=c["model"]["name"], status="skipped", reason="time budget"
            ).model_dump(mode="json")
            for c in state["queue"][state["position"] :]
        ]
    return {"outcomes": outcomes, "stopped_by": stopped_by}


@_node
def report(state: CrawlState, ctx: CrawlContext) -> dict:
    """The session summary: registered, updated, deprecated, skipped with reasons."""
    request = _request(state)
    outcomes = [Outcome.model_validate(o) for o in state.get("outcomes", [])]
    done = [o for o in outcomes if o.status in ("registered", "updated")]
    summary = CrawlReport(
        session=state["session"],
        source=request.source,
        base=request.base,
        demo=ctx.source.demo,
        registered=[o.item for o in outcomes if o.status == "registered"],
        updated=[o.item for o in outcomes if o.status == "updated"],
        deprecated=[o.item for o in outcomes if o.status == "deprecated"],
        reactivated=[o.item for o in outcomes if o.status == "reactivated"],
        skipped=[o for o in outcomes if o.status == "skipped"],
        failed=[o for o in outcomes if o.status == "failed"],
        up_to_date=state.get("up_to_date", 0),
        calibration_edges=sum(o.calibration_edges for o in done),
        calibration_demo=any(o.calibration_demo for o in done),
        downloaded_bytes=state.get("downloaded_bytes", 0),
        llm_summaries=sum(o.description_origin == "llm" for o in done),
        no_llm_summaries=sum(o.description_origin == "no-llm" for o in done),
        listing_complete=state.get("listing_complete", False),
        stopped_by=state.get("stopped_by"),
        notes=state.get("notes", []),
    )
    return {"report": summary.model_dump(mode="json")}
