"""Adding the trigger words of selected LoRA experts to a prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

TriggerMode = Literal["prepend", "append", "off"]


def with_trigger_words(prompt: str, words: Sequence[str], mode: TriggerMode = "prepend") -> str:
    """``prompt`` with the trigger words it lacks, comma-separated, before or after it.

    Words already in the prompt (case-insensitive) are not repeated; ``off`` leaves it as is.
    """
    if mode == "off":
        return prompt
    lowered = prompt.lower()
    missing: list[str] = []
    for word in words:
        word = word.strip()
        if word and word.lower() not in lowered and word.lower() not in map(str.lower, missing):
            missing.append(word)
    if not missing:
        return prompt
    parts = [*missing, prompt] if mode == "prepend" else [prompt, *missing]
    return ", ".join(p for p in parts if p)
