"""Messages of the LLM-proposed-weights planner (a baseline of the paper)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tools.llm import UNTRUSTED_DATA_RULE, quote_untrusted

SYSTEM = (
    "You plan how to merge text-to-image experts (Stable Diffusion checkpoints and LoRAs) "
    "for one image prompt. Give every listed expert exactly once a coefficient between 0 "
    "and 1: how strongly it should shape the image. The coefficients become merge weights "
    "by a softmax within the checkpoints and within the LoRAs, so only differences between "
    "experts of the same kind matter: raise the experts whose skills the prompt needs, "
    "lower the ones it does not. " + UNTRUSTED_DATA_RULE
)


def weights_messages(
    prompt: str, expert_ids: Sequence[str], kinds: Sequence[str], descriptions: Sequence[str]
) -> list[tuple[str, str]]:
    """System rules, then the prompt and the expert cards as quoted data."""
    cards = [
        {"expert_id": i, "kind": "checkpoint" if k == "ckpt" else "LoRA"}
        for i, k in zip(expert_ids, kinds, strict=True)
    ]
    listing = "\n".join(
        f"{json.dumps(card)}\n{quote_untrusted(text, 'description', max_chars=1500)}"
        for card, text in zip(cards, descriptions, strict=True)
    )
    user = (
        f"Image prompt:\n{quote_untrusted(prompt, 'prompt', max_chars=2000)}\n\n"
        f"Experts ({len(cards)}):\n{listing}"
    )
    return [("system", SYSTEM), ("user", user)]
