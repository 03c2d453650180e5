"""What the page shows, as plain rows and Markdown: experts merged and why, what was
dropped, the conversation, an expert's page. No UI library here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.chat.state import Conversation, Generation
from agents.pipeline.recipe import Recipe
from agents.selection.result import SelectionResult
from agents.webui.service import ExpertPage, ThreadView, TurnView
from graph.records import Expert

EXPERT_COLUMNS = ["kind", "id", "name", "coefficient", "merge weight", "why picked"]
DROPPED_COLUMNS = ["id", "kind", "stage", "why dropped"]
SEARCH_COLUMNS = ["id", "kind", "base", "status", "similarity", "name", "description"]


def _md(text: str) -> str:
    """``text`` safe inside Markdown (crawled names and prompts are untrusted)."""
    return "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|~" else c for c in str(text))


def _code(text: str) -> str:
    """``text`` as a Markdown code span."""
    return "`" + str(text).replace("`", "'") + "`"


def expert_rows(
    recipe: Recipe,
    selection: SelectionResult | None,
    conversation: Conversation | None = None,
    overrides: dict[str, float] | None = None,
) -> list[list[Any]]:
    """One row per merged expert: checkpoints first, then LoRAs."""
    reasons = (
        {e.id: e.reason for e in (selection.checkpoints + selection.loras)} if selection else {}
    )
    pinned = set(conversation.pinned) if conversation else set()
    rows = []
    for e in recipe.checkpoints + recipe.loras:
        why = []
        if e.expert_id in pinned:
            why.append("pinned by you")
        if e.expert_id in reasons:
            why.append(reasons[e.expert_id])
        if recipe.selection_mode == "fixed" and not why:
            why.append("fixed expert list")
        if overrides and e.expert_id in overrides:
            why.append(f"coefficient set by you ({overrides[e.expert_id]:.2f})")
        rows.append(
            [
                e.kind,
                e.expert_id,
                e.name,
                round(e.coefficient, 4),
                round(e.merge_weight, 4),
                "; ".join(why),
            ]
        )
    if not recipe.checkpoints:
        rows.insert(
            0,
            [
                "ckpt",
                "(base model)",
                recipe.base_model or "",
                None,
                None,
                "no checkpoint expert selected",
            ],
        )
    return rows


def dropped_rows(
    recipe: Recipe, selection: SelectionResult | None, conversation: Conversation | None = None
) -> list[list[Any]]:
    """Candidates the selection dropped, experts banned, and selected experts left out
    (by the LoRA bound, or for want of local weights)."""
    merged = {e.expert_id for e in recipe.checkpoints + recipe.loras}
    rows = []
    if conversation is not None:
        rows += [[i, "", "ban", "banned by you"] for i in conversation.banned]
    if selection is not None:
        rows += [
            [d.id, d.kind.value, d.stage, d.reason]
            for d in selection.dropped
            if d.id not in merged  # pinned after the selection dropped it
        ]
        banned = set(conversation.banned) if conversation else set()
        for e in selection.checkpoints + selection.loras:
            if e.id not in merged and e.id not in banned:
                rows.append(
                    [
                        e.id,
                        e.kind.value,
                        "bound",
                        "selected, then left out by the LoRA bound or for want of local weights",
                    ]
                )
    return rows


def recipe_summary(recipe: Recipe) -> str:
    """One Markdown line of the settings, then the notes (demo backends first)."""
    lines = [
        f"**{_md(recipe.final_prompt)}**",
        f"seed {recipe.seed} · {recipe.steps} steps · {recipe.width}×{recipe.height} · "
        f"CFG {recipe.guidance:g} · planner {_code(recipe.planner)} · selection "
        f"{_code(recipe.selection_mode)}" + (" · **DEMO backends**" if recipe.demo else ""),
    ]
    lines += [f"- note: {_md(n)}" for n in recipe.notes]
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if lines[2:] else "")


def turn_status(view: TurnView) -> str:
    """How the message was read, what changed, and any notes or error."""
    report = view.report
    decision = report.decision
    how = f"read as {_code(decision.action)} ({report.interpreter})"
    if report.interpreter != "command" and decision.reasoning:
        how += f": {_md(decision.reasoning)}"
    lines = [how]
    lines += [f"- {_md(c)}" for c in report.changes]
    lines += [f"- note: {_md(n)}" for n in report.notes]
    if report.error:
        lines.append(f"**error:** {_md(report.error)}")
    return "\n".join(lines)


def assistant_text(view: TurnView) -> str:
    """The assistant's reply in the conversation panel."""
    report = view.report
    parts = [*report.changes, *report.notes]
    if report.error:
        parts.append(f"error: {report.error}")
    last = report.conversation.last
    if report.generated and last is not None:
        merged = ", ".join(
            f"{e.name} ×{e.merge_weight:.2f}" for e in last.recipe.checkpoints + last.recipe.loras
        )
        parts.append(f"drew turn {last.turn}: {merged or 'the base model alone'}")
    if report.decision.action == "help":
        from agents.chat.policy import COMMANDS

        parts += [f"{usage}: {what}" for usage, what in COMMANDS]
    return "\n".join(parts) or "nothing changed"


def history_messages(thread: ThreadView) -> list[dict[str, str]]:
    """The stored turns of a thread as chat messages (user, then what it did)."""
    messages = []
    for entry in thread.history:
        messages.append({"role": "user", "content": entry.get("request") or ""})
        done = entry.get("action") or ""
        if entry.get("generate_run_id"):
            done += " · drew"
        if entry.get("prompt"):
            done += f" · prompt: {entry['prompt']}"
        messages.append({"role": "assistant", "content": done})
    return messages


def conversation_line(conversation: Conversation, overrides: dict[str, float]) -> str:
    bound = "selection decides" if conversation.max_loras is None else conversation.max_loras
    line = (
        f"thread {_code(conversation.thread)} · turn {conversation.turn} · seed "
        f"{conversation.seed} · LoRA bound {bound} · pinned "
        f"{_md(', '.join(conversation.pinned) or '-')} · banned "
        f"{_md(', '.join(conversation.banned) or '-')}"
    )
    if overrides:
        line += " · coefficients set: " + ", ".join(
            f"{_md(k)}={v:.2f}" for k, v in overrides.items()
        )
    return line


def steerable_ids(generation: Generation | None, selection: SelectionResult | None) -> list[str]:
    """Ids the steering controls offer: merged experts, then the selection's candidates."""
    ids: list[str] = []
    if generation is not None:
        ids += [e.expert_id for e in generation.recipe.checkpoints + generation.recipe.loras]
    if selection is not None:
        ids += [e.id for e in selection.checkpoints + selection.loras]
        ids += [d.id for d in selection.dropped]
    return [i for i in dict.fromkeys(ids) if i]


def search_rows(hits: Sequence[tuple[Expert, float | None]]) -> list[list[Any]]:
    return [
        [
            e.id,
            e.kind.value,
            e.base.value,
            e.status.value,
            None if s is None else round(s, 4),
            e.name,
            e.description[:120],
        ]
        for e, s in hits
    ]


def expert_markdown(page: ExpertPage) -> str:
    """The expert's page: summary, trigger words, versions, file and hashes."""
    e = page.expert
    lines = [
        f"### {_md(e.name)} ({_code(e.id)})",
        f"{e.kind.value} · {e.base.value} · **{e.status.value}**"
        + (f" ({_md(e.status_reason)})" if e.status_reason else "")
        + (" · DEMO DATA" if e.demo else ""),
        "",
        _md(e.description) or "_no summary_",
        "",
        f"- summary written by: {e.description_origin}",
        f"- trigger words: {_md(', '.join(e.trigger_words)) or '-'}",
        f"- tags: {_md(', '.join(e.tags)) or '-'}",
        f"- styles: {_md(', '.join(e.styles)) or '-'} · subjects: "
        f"{_md(', '.join(e.subjects)) or '-'}",
        f"- source: {e.source.platform}"
        + (f" <{e.source.url}>" if e.source.url and e.source.url.startswith("http") else ""),
    ]
    if e.file is not None:
        lines.append(
            f"- weights: {_code(e.file.path or '-')} · {e.file.format or '?'} · "
            f"{(e.file.size_bytes or 0) / 2**20:.1f} MB"
        )
        lines.append(f"- sha256: {_code(e.file.sha256 or '-')}")
    versions = " → ".join(
        f"{_code(v.id)} ({v.status.value})" + (" ← this" if v.id == e.id else "")
        for v in page.history
    )
    lines.append(f"- versions: {versions}")
    if e.superseded_by:
        lines.append(f"- superseded by {_code(e.superseded_by)}")
    count = len({s.ref_id for s in page.scores})
    if page.samples:
        samples = f"{len(page.samples)} sample images (the first seed of each)"
    elif count:
        samples = "no sample images kept for these scores"
    else:
        samples = "no sample images"
    lines.append(f"- calibration: {count} reference prompts scored · {samples}")
    return "\n".join(lines)


def calibration_samples(page: ExpertPage) -> list[tuple[str, str]]:
    """The gallery of calibration's images: ``(PNG path, its reference prompt)``."""
    return [(str(s.path), s.prompt) for s in page.samples]


def calibration_rows(page: ExpertPage) -> list[dict[str, Any]]:
    """Rows of the calibration chart: one bar per reference prompt and metric."""
    return [
        {"prompt": s.prompt[:60], "metric": s.metric, "score": round(s.score, 4)}
        for s in page.scores
    ]
