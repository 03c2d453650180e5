"""The messages of the two LLM steps (analysis, filtering).

The user's prompt and the experts' descriptions (written from crawled pages) enter the
messages only as quoted data.
"""

from __future__ import annotations

import json

from agents.prompt_syntax import ParsedPrompt
from agents.selection.result import SelectedExpert
from agents.selection.state import Analysis, Candidate
from tools.llm import UNTRUSTED_DATA_RULE, quote_untrusted
from tools.settings import SelectionSettings

ANALYSIS_SYSTEM = f"""You plan which community expert models (checkpoints and LoRAs) a
text-to-image system should merge to draw a user's prompt.

Work step by step in "reasoning", then fill the other fields:
1. summary: one English sentence with the basic generation needs: the main subject and
   the overall style.
2. components: the prompt's semantic components (characters, objects, scene, style,
   quality), and for each the visual attributes needed to depict it well, as short
   English noun phrases (a portrait needs e.g. "eye detail", "lip detail"; a night
   scene needs e.g. "neon lighting"; a named style needs that style). Leave out what
   the prompt negates ("no neon", "not a photo").
3. avoid: what the prompt rules out, as short English phrases ("neon", "photo").
Write English whatever the prompt's language. Emoji stand for what they depict. Stay
with what the prompt asks for; invent no subjects.

{UNTRUSTED_DATA_RULE}"""

FILTER_SYSTEM = f"""You choose the expert models to merge for a text-to-image prompt.
You get the prompt's needs and candidate experts found by embedding similarity. Give a
verdict for every candidate, copying its id exactly:
- keep a candidate only if its skill serves a need of the prompt; drop one that serves
  what the prompt rules out;
- drop a candidate that only shares a word with a need but depicts something else (a red
  flamingo LoRA for a woman with red hair);
- drop a candidate whose skill duplicates a kept or user-requested expert (keep the better
  match);
- keep the checkpoint(s) whose overall style fits best; decide the numbers yourself, at
  most {{max_checkpoints}} checkpoints and {{max_loras}} LoRAs.
Each reason is one short sentence.

{UNTRUSTED_DATA_RULE}"""


def analysis_messages(parsed: ParsedPrompt, settings: SelectionSettings) -> list[tuple[str, str]]:
    emphasis = [f"{p.text} (weight {p.weight:g})" for p in parsed.phrases if p.weight > 1.05]
    lines = [
        "The prompt:",
        quote_untrusted(parsed.text, "prompt", settings.max_prompt_chars),
        f"At most {settings.max_attributes} attributes in all.",
    ]
    if emphasis:
        lines.append("The user emphasised: " + "; ".join(emphasis))
    return [("system", ANALYSIS_SYSTEM), ("user", "\n".join(lines))]


def filter_messages(
    parsed: ParsedPrompt,
    analysis: Analysis,
    checkpoints: list[Candidate],
    loras: list[Candidate],
    requested: list[SelectedExpert],
    settings: SelectionSettings,
) -> list[tuple[str, str]]:
    needs = {
        "summary": analysis.summary,
        "components": {c.name: c.attributes for c in analysis.components},
        "rules_out": analysis.avoid,
    }
    listing = {
        "checkpoints": [_card(c) for c in checkpoints],
        "loras": [_card(c) for c in loras],
        "requested_by_user": [{"id": r.id, "name": r.name} for r in requested],
    }
    system = FILTER_SYSTEM.format(
        max_checkpoints=settings.max_checkpoints,
        max_loras=max(settings.max_loras - len(requested), 0),
    )
    user = "\n".join(
        [
            "The prompt:",
            quote_untrusted(parsed.text, "prompt", settings.max_prompt_chars),
            "Its needs: " + json.dumps(needs, ensure_ascii=False),
            "The candidates (descriptions come from the experts' web pages):",
            quote_untrusted(json.dumps(listing, ensure_ascii=False, indent=1), "candidates", 30000),
        ]
    )
    return [("system", system), ("user", user)]


def _card(candidate: Candidate) -> dict:
    return {
        "id": candidate.id,
        "name": candidate.name,
        "description": candidate.description[:400],
        "found_for": {q: round(s, 2) for q, s in candidate.matches.items()},
    }
