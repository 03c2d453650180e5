"""The message of the chat's one LLM decision (what a free-text turn asks for).

The user's message, the current prompt and the experts' names (which come from crawled
pages) enter the messages only as quoted data.
"""

from __future__ import annotations

import json

from agents.chat.schemas import MAX_PROMPT_CHARS
from agents.chat.state import Conversation
from tools.llm import UNTRUSTED_DATA_RULE, quote_untrusted

HISTORY_TURNS = 6

DECISION_SYSTEM = f"""You read the messages of a user who makes images with DiffGraph, a
text-to-image system that draws a prompt by merging community expert models (checkpoints
and LoRAs). Each message is a new image prompt, a refinement of the current one, or a
request about the session. Choose one action:
- new_prompt: the user describes a different image. prompt: their description as an image
  prompt, in their words.
- refine: the user wants to change the current image ("more cinematic lighting", "drop the
  anime style"). prompt: the complete updated prompt. Keep every part of the current prompt
  that the user did not ask to change, add what they ask for, remove what they ask to drop.
- fewer_experts / more_experts: merge fewer / more LoRAs. set_loras: merge at most
  max_loras LoRAs (a number the user gave).
- pin / ban: always / never merge the experts in expert_ids; unpin / unban undo that. Copy
  ids exactly from the session's experts, pinned or banned lists.
- seed: draw again with another seed (seed: the number, if the user gave one).
- redraw: draw again exactly as it is (the user changed settings outside the chat).
- show: list the experts and their coefficients. help: explain the commands. quit: leave.
- save: write the last result to the folder the user wrote (path, copied exactly; merged:
  true if they also want the merged model file).
Fill only the fields of the chosen action; reasoning is one short sentence.

{UNTRUSTED_DATA_RULE}"""


def decision_messages(
    conversation: Conversation, history: list[dict], message: str
) -> list[tuple[str, str]]:
    """System rules, then the session and the user's message as quoted data."""
    last = conversation.last
    experts = []
    if last is not None:
        experts = [
            {"id": e.expert_id, "name": e.name, "kind": e.kind, "coefficient": e.coefficient}
            for e in last.recipe.checkpoints + last.recipe.loras
        ]
    session = {
        "current_prompt": conversation.prompt,
        "experts_of_the_last_image": experts,
        "pinned": conversation.pinned,
        "banned": conversation.banned,
        "seed": conversation.seed,
        "max_loras": conversation.max_loras,
        "recent_messages": [
            {"message": h["request"], "action": h["action"]} for h in history[-HISTORY_TURNS:]
        ],
    }
    user = "\n".join(
        [
            "The session:",
            quote_untrusted(json.dumps(session, ensure_ascii=False, indent=1), "session", 20000),
            "The user's message:",
            quote_untrusted(message, "message", MAX_PROMPT_CHARS),
        ]
    )
    return [("system", DECISION_SYSTEM), ("user", user)]
