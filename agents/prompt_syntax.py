"""Reading in-the-wild prompt text: AUTOMATIC1111 syntax, emoji, scripts, length.

Pure text functions shared by the agents. ``parse_prompt`` turns
``"(masterpiece:1.2), [cat|dog] 🐱, <lora:redHair_v2:0.8>"`` into plain text
(``"masterpiece, cat or dog cat face"``), weighted phrases and the ``<lora:...>`` tags.
"""

from __future__ import annotations

import re
import unicodedata

from pydantic import BaseModel, Field

# CLIP text encoders read 77 tokens (75 usable); SD pipelines cut or chunk the rest.
CLIP_TOKEN_LIMIT = 75
EMPHASIS = 1.1  # A1111: (x) multiplies attention by 1.1, [x] divides by it

_EXTRA_NETWORK = re.compile(r"<\s*([A-Za-z]+)\s*:\s*([^<>:]+?)\s*(?::\s*([^<>]*?))?\s*>")
_PEFT_TAGS = {"lora", "lyco", "locon", "loha", "lokr"}
_ALTERNATION = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
_EDIT = re.compile(r"\[([^\[\]:]*):([^\[\]:]*):\s*[0-9.]+\s*\]")
_EDIT_ONE = re.compile(r"\[([^\[\]:]*):\s*[0-9.]+\s*\]")
_TOKEN = re.compile(r"\\[()\[\]\\]|\(|\[|:\s*([+-]?\d*\.?\d+)\s*\)|\)|\]|[^\\()\[\]:]+|:|\\", re.X)
_CLAUSE = re.compile(
    r"[,;\n|，；、。｜]+|(?<=[^\d\s])\.(?=\s|$)|(?<=\s)[-–—](?=\s)|\s+with\s+", re.I
)
_SPACE = re.compile(r"\s+")
_CLIP_PIECE = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
_JOINERS = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}


class LoraTag(BaseModel):
    """An explicit ``<lora:name:weight>`` (or lyco/locon/...) tag."""

    name: str
    weight: float = 1.0
    tag: str = "lora"
    raw: str


class Phrase(BaseModel):
    """A comma- or clause-separated part of the prompt and its A1111 attention weight."""

    text: str
    weight: float = 1.0


class ParsedPrompt(BaseModel):
    raw: str
    text: str = Field(description="plain text: syntax removed, emoji named")
    phrases: list[Phrase] = Field(default_factory=list)
    lora_tags: list[LoraTag] = Field(default_factory=list)
    other_tags: list[str] = Field(default_factory=list, description="e.g. <hypernet:...>")
    emoji: list[str] = Field(default_factory=list)
    clip_tokens: int = Field(0, description="rough CLIP token count of the plain text")
    non_latin_share: float = Field(0.0, description="share of letters outside Latin script")

    @property
    def is_blank(self) -> bool:
        return not self.text.strip() and not self.lora_tags

    @property
    def over_clip_limit(self) -> bool:
        return self.clip_tokens > CLIP_TOKEN_LIMIT


def parse_prompt(raw: str) -> ParsedPrompt:
    """Plain text, weighted phrases and extra-network tags of an A1111-style prompt."""
    lora_tags, other_tags = [], []

    def take_tag(match: re.Match) -> str:
        kind, name, rest = match.group(1).lower(), match.group(2).strip(), match.group(3)
        if kind in _PEFT_TAGS:
            lora_tags.append(LoraTag(name=name, weight=_first_number(rest), tag=kind, raw=match[0]))
        else:
            other_tags.append(match[0])
        return ","

    text = _EXTRA_NETWORK.sub(take_tag, raw)
    text = re.sub(r"\bBREAK\b", ",", text)
    text, emoji = name_emoji(text)
    text = _expand_scheduling(text)
    segments = _attention(text)
    phrases = _phrases(segments)
    plain = _SPACE.sub(" ", "".join(t for t, _ in segments)).strip(" ,")
    plain = re.sub(r"\s*,[\s,]*", ", ", plain)
    return ParsedPrompt(
        raw=raw,
        text=plain,
        phrases=phrases,
        lora_tags=lora_tags,
        other_tags=other_tags,
        emoji=emoji,
        clip_tokens=len(_CLIP_PIECE.findall(plain)),
        non_latin_share=non_latin_share(plain),
    )


def name_emoji(text: str) -> tuple[str, list[str]]:
    """Emoji replaced by their Unicode names (``🐱`` → ``cat face``), and the emoji found."""
    out, found = [], []
    for char in text:
        if char in _JOINERS or 0x1F3FB <= ord(char) <= 0x1F3FF:  # joiners, skin tones
            continue
        if _is_emoji(char):
            found.append(char)
            name = unicodedata.name(char, "").lower()
            out.append(f" {name} " if name else " ")
        else:
            out.append(char)
    return "".join(out), found


def non_latin_share(text: str) -> float:
    """Share of letters that are not Latin script (0 for English, ~1 for Chinese)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    other = sum(1 for c in letters if not unicodedata.name(c, "").startswith("LATIN"))
    return other / len(letters)


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) == "So" and (
        code >= 0x1F000 or 0x2600 <= code <= 0x27BF or 0x2B00 <= code <= 0x2BFF
    )


def _first_number(text: str | None) -> float:
    """The first weight of ``0.8`` / ``0.8:0.5`` / ``unet=0.8``; 1.0 when absent or bad."""
    if text:
        match = re.search(r"[+-]?\d*\.?\d+", text)
        if match:
            return float(match[0])
    return 1.0


def _expand_scheduling(text: str) -> str:
    """``[a|b]`` → ``a or b``; ``[a:b:0.5]`` → ``a b``; ``[a:0.5]`` → ``a`` (innermost first)."""
    previous = None
    while previous != text:
        previous = text
        text = _ALTERNATION.sub(
            lambda m: " or ".join(p.strip() for p in m[1].split("|") if p.strip()), text
        )
        text = _EDIT.sub(lambda m: f"{m[1].strip()} {m[2].strip()}".strip(), text)
        text = _EDIT_ONE.sub(lambda m: m[1].strip(), text)
    return text


def _attention(text: str) -> list[tuple[str, float]]:
    """Text segments and their A1111 attention weights (``(x:1.3)``, ``((x))``, ``[x]``)."""
    segments: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for segment in segments[start:]:
            segment[1] *= factor

    for match in _TOKEN.finditer(text):
        token, weight = match[0], match[1]
        if token.startswith("\\") and len(token) == 2:
            segments.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(segments))
        elif token == "[":
            square_open.append(len(segments))
        elif weight is not None and round_open:
            scale(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            scale(round_open.pop(), EMPHASIS)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / EMPHASIS)
        elif weight is not None:  # a stray ":1.2)" with no opening bracket
            segments.append([",", 1.0])
        elif token in "()[]\\":
            continue
        else:
            segments.append([token, 1.0])
    for start in round_open:
        scale(start, EMPHASIS)
    for start in square_open:
        scale(start, 1 / EMPHASIS)
    return [(t, round(w, 4)) for t, w in segments]


def _phrases(segments: list[tuple[str, float]]) -> list[Phrase]:
    """Comma- and clause-separated phrases, each with the largest weight inside it."""
    phrases: list[Phrase] = []
    seen: set[str] = set()
    current: list[str] = []
    weight = 0.0

    def flush() -> None:
        nonlocal weight
        text = _SPACE.sub(" ", "".join(current)).strip(" .:-")
        if text and text.lower() not in seen:
            seen.add(text.lower())
            phrases.append(Phrase(text=text, weight=weight or 1.0))
        current.clear()
        weight = 0.0

    for text, w in segments:
        pos = 0
        for sep in _CLAUSE.finditer(text):
            if text[pos : sep.start()].strip():
                current.append(text[pos : sep.start()])
                weight = max(weight, w)
            flush()
            pos = sep.end()
        if text[pos:].strip():
            current.append(text[pos:])
            weight = max(weight, w)
        elif text[pos:]:
            current.append(text[pos:])
    flush()
    return phrases
