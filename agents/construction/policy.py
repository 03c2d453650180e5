"""The no-LLM policy: a deterministic skill summary from what the platform publishes.

Used when no LLM is configured, and when the LLM's replies fail validation. Built from the
description text, tags, trigger words and example-image prompts; pure functions.
"""

from __future__ import annotations

import re

from agents.construction.schemas import DESCRIPTION_MAX, SkillSummary
from tools.platforms.demo.catalogue import DEMO_NOTICE
from tools.platforms.homepage import html_to_text
from tools.platforms.records import PlatformModel

_STYLE_WORDS = (
    "style", "art", "paint", "anime", "illustration", "realistic", "photo", "sketch", "ink",
    "comic", "cartoon", "3d", "render", "pixel", "watercolor", "oil", "film", "retro",
    "vintage", "poster", "print", "2d", "2.5d", "surreal", "minimal", "cyberpunk", "clay",
    "media",
)  # fmt: skip
_VISUAL_WORDS = (
    "light", "detail", "quality", "sharp", "grain", "texture", "glow", "grading", "shadow",
    "contrast", "skin", "bokeh", "focus", "enhancer", "sunset",
)  # fmt: skip
_GENERIC_TAGS = {"demo", "base model", "checkpoint", "tool", "character", "concept", "style"}
_WEIGHT = re.compile(
    r"(?:recommended|preferred|suggested)?\s*weight\s*[:=]?\s*(-?\d+(?:\.\d+)?)", re.I
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _classify(tags: list[str]) -> tuple[list[str], list[str], list[str]]:
    subjects, styles, visual = [], [], []
    for tag in tags:
        low = tag.lower().strip()
        if not low or low in _GENERIC_TAGS or len(low) > 60:
            continue
        if any(w in low for w in _VISUAL_WORDS):
            visual.append(tag)
        elif any(w in low for w in _STYLE_WORDS):
            styles.append(tag)
        else:
            subjects.append(tag)
    return subjects[:8], styles[:8], visual[:8]


def _lead_sentences(text: str, limit: int) -> str:
    """The first sentences of ``text`` that fit in ``limit`` characters."""
    out = ""
    for sentence in _SENTENCE.split(" ".join(text.split())):
        if not sentence or DEMO_NOTICE.startswith(sentence[:20]):
            continue
        candidate = f"{out} {sentence}".strip()
        if len(candidate) > limit:
            break
        out = candidate
    return out or text[:limit].strip()


def recommended_weight(text: str) -> float | None:
    """A weight stated in text ("Recommended weight: 0.8"), if it is plausible."""
    for match in _WEIGHT.finditer(text):
        value = float(match.group(1))
        if -2.0 <= value <= 2.0:
            return value
    return None


def deterministic_summary(model: PlatformModel, page_text: str = "") -> SkillSummary:
    """A summary of the model's (first) version from its metadata; the homepage text is
    searched only for a stated weight."""
    version = model.versions[0]
    text = html_to_text(version.description if version.description else None, 4000)
    model_text = html_to_text(model.description, 4000)
    what = "checkpoint" if model.type.lower() == "checkpoint" else f"{model.type} adapter"
    parts = [f"{model.name}: a {what}."]
    lead = _lead_sentences(model_text or text, 300)
    if lead:
        parts.append(lead)
    tags = [t for t in model.tags if t.lower() not in _GENERIC_TAGS]
    if tags:
        parts.append("Tags: " + ", ".join(tags[:8]) + ".")
    if version.example_prompts:
        parts.append("Example prompts: " + "; ".join(version.example_prompts[:2]) + ".")
    description = " ".join(parts)
    if len(description) > DESCRIPTION_MAX:
        description = description[: DESCRIPTION_MAX - 3].rstrip() + "..."
    if len(description) < 20:
        description = (description + " (no description published)")[:DESCRIPTION_MAX]
    subjects, styles, visual = _classify(model.tags)
    weight = version.recommended_weight
    if weight is None:
        weight = recommended_weight("\n".join((model_text, text, page_text)))
    return SkillSummary(
        description=description,
        subjects=subjects,
        styles=styles,
        visual_attributes=visual,
        trigger_words=[w[:60] for w in version.trained_words[:10]],
        recommended_weight=weight,
        base_model=version.base.value if version.base else "unknown",
    )
