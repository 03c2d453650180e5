"""Reading needs out of a prompt without an LLM: negation, negative prompts, language,
what each expert is for, and where a prompt names an expert (trigger words, names, tags).

Pure text functions and small indexes; the no-LLM policy (policy.py) combines them with
embedding similarity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from graph.records import Expert, ExpertKind

Role = Literal["style", "character", "concept", "lighting", "detail", "quality", "checkpoint"]
ROLES: tuple[Role, ...] = (
    "style",
    "character",
    "concept",
    "lighting",
    "detail",
    "quality",
    "checkpoint",
)

# A1111 infotext: the prompt, then "Negative prompt: ...", then a "Steps: ..." line.
_NEGATIVE = re.compile(r"(?:^|\n|\s)negative prompt\s*:", re.I)
_PARAMETERS = re.compile(r"\n\s*steps\s*:\s*\d+.*$", re.I | re.S)
_NEGATION = re.compile(
    r"^(?:no|not|non|without|never|avoid|minus|except|don'?t\s+(?:use|want|add)|do\s+not\s+"
    r"(?:use|want|add)|isn'?t|is\s+not|no\s+more)\b[\s-]*(?:(?:a|an|the|any|too|so|very)\s+)*",
    re.I,
)
_WORD = re.compile(r"[a-z0-9]+")
NAMED_MEMO_SIZE = 4096  # texts whose named experts a LexicalIndex remembers

# Words too common in tags and names to say what an expert is for.
GENERIC_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "of",
        "in",
        "on",
        "with",
        "for",
        "to",
        "by",
        "at",
        "from",
        "style",
        "styles",
        "lora",
        "loras",
        "model",
        "models",
        "checkpoint",
        "base",
        "demo",
        "tool",
        "tools",
        "enhancer",
        "effect",
        "effects",
        "concept",
        "character",
        "characters",
        "original",
        "oc",
        "v1",
        "v2",
        "v3",
        "xl",
        "sd",
        "sd15",
        "sdxl",
        "art",
        "image",
        "images",
        "picture",
        "quality",
        "general",
        # intensifiers: "highly detailed" asks for detail as "detailed" does
        "highly",
        "very",
        "extremely",
        "ultra",
        "super",
        "hyper",
        "insanely",
    ]
)

# Function words of the languages users most often prompt in besides English. A Latin
# script prompt with several of them and few English ones is probably not English.
_FOREIGN = {
    "Spanish": [
        "el",
        "la",
        "los",
        "las",
        "una",
        "unos",
        "de",
        "del",
        "con",
        "y",
        "en",
        "por",
        "para",
        "muy",
        "sobre",
        "al",
    ],
    "French": [
        "le",
        "la",
        "les",
        "une",
        "des",
        "du",
        "avec",
        "et",
        "dans",
        "sur",
        "pour",
        "très",
        "au",
        "aux",
        "est",
    ],
    "German": [
        "der",
        "die",
        "das",
        "ein",
        "eine",
        "einem",
        "einer",
        "mit",
        "und",
        "im",
        "auf",
        "für",
        "sehr",
        "ist",
        "von",
    ],
    "Italian": [
        "il",
        "lo",
        "gli",
        "una",
        "della",
        "delle",
        "con",
        "nel",
        "sulla",
        "per",
        "molto",
        "di",
    ],
    "Portuguese": ["um", "uma", "os", "das", "dos", "com", "em", "na", "no", "para", "muito", "de"],
}
_ENGLISH = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "with",
        "and",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "under",
        "over",
        "is",
    ]
)

_ROLE_TAGS: dict[str, Role] = {
    "style": "style",
    "art style": "style",
    "character": "character",
    "characters": "character",
    "celebrity": "character",
    "original character": "character",
    "concept": "concept",
    "clothing": "concept",
    "poses": "concept",
    "background": "concept",
    "objects": "concept",
    "buildings": "concept",
    "vehicle": "concept",
    "animal": "concept",
    "lighting": "lighting",
    "light": "lighting",
    "detail": "detail",
    "details": "detail",
    "quality": "quality",
}


def split_negative(raw: str) -> tuple[str, str]:
    """The prompt and its ``Negative prompt:`` text (A1111 infotext; parameters removed)."""
    text = _PARAMETERS.sub("", raw)
    match = _NEGATIVE.search(text)
    if not match:
        return text.strip(), ""
    return text[: match.start()].strip(), text[match.end() :].strip()


def negated(phrase: str) -> str | None:
    """What a negated phrase rules out ("no neon" → "neon", "not a photo" → "photo"),
    or None when the phrase is not a negation."""
    match = _NEGATION.match(phrase.strip())
    if not match:
        return None
    rest = phrase.strip()[match.end() :].strip(" .!")
    return rest or None


def language_hint(text: str) -> str | None:
    """The language a Latin-script prompt is probably written in, when not English."""
    tokens = re.findall(r"[^\W\d_]+", text.lower())
    if len(tokens) < 3:
        return None
    english = sum(w in _ENGLISH for w in tokens)
    scores = {lang: sum(w in set(vocab) for w in tokens) for lang, vocab in _FOREIGN.items()}
    lang, best = max(scores.items(), key=lambda item: item[1])
    if best >= 2 and best > 2 * english:
        return lang
    return None


def words(text: str) -> list[str]:
    """Lower-case words, with ``_`` and ``-`` as separators (``cpt_nova`` → cpt, nova)."""
    return _WORD.findall(text.lower().replace("_", " "))


def stem(word: str) -> str:
    """A crude English stem, enough to meet "photo", "photograph" and "photography"."""
    for suffix in ("graphy", "graphs", "graph", "ings", "ing", "ies", "es", "ed", "s", "y"):
        if len(word) >= len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def expert_role(expert: Expert) -> Role:
    """What an expert is for, from its kind, tags and description."""
    if expert.kind is ExpertKind.CKPT:
        return "checkpoint"
    for tag in expert.tags:
        role = _ROLE_TAGS.get(tag.lower().strip())
        if role:
            return role
    text = f"{expert.name} {expert.description}".lower()
    if re.search(r"\b(original character|character|mascot|oc)\b", text):
        return "character"
    if re.search(r"\blight(ing)?\b", text):
        return "lighting"
    if re.search(r"\b(detail|details|texture)\b", text):
        return "detail"
    if re.search(r"\b(quality|sharp|artefacts?|artifacts?)\b", text):
        return "quality"
    if re.search(r"\bstyle\b", text):
        return "style"
    return "concept"


def _clean_name(name: str) -> str:
    return re.sub(r"\(.*?\)|\[.*?\]", " ", name)


@dataclass
class ExpertCard:
    """What the no-LLM policy knows of an expert besides its description embedding."""

    id: str
    kind: ExpertKind
    role: Role
    origin: str
    names: list[str]  # word tuples joined by spaces: the name and the trigger words
    keywords: set[str]  # stems of its distinctive tag and name words


@dataclass
class LexicalIndex:
    """Where a prompt names an expert (by trigger word or name), and which of an expert's
    tag and name words a phrase uses, weighted by rarity across the graph."""

    cards: dict[str, ExpertCard]
    by_name: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    idf: dict[str, float] = field(default_factory=dict)
    longest: int = 1
    # named_in answers by text: the policy asks it about each phrase once per candidate
    _named: dict[str, dict[str, str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, experts: Iterable[Expert]) -> LexicalIndex:
        cards: dict[str, ExpertCard] = {}
        by_name: dict[tuple[str, ...], set[str]] = {}
        counts: dict[str, int] = {}
        for expert in experts:
            names = [" ".join(words(_clean_name(expert.name)))]
            names += [" ".join(words(t)) for t in expert.trigger_words]
            names = [n for n in dict.fromkeys(names) if n and n not in GENERIC_WORDS]
            keywords = {
                stem(w)
                for text in [*expert.tags, _clean_name(expert.name)]
                for w in words(text)
                if w not in GENERIC_WORDS and len(w) > 2
            }
            cards[expert.id] = ExpertCard(
                id=expert.id,
                kind=expert.kind,
                role=expert_role(expert),
                origin=expert.description_origin,
                names=names,
                keywords=keywords,
            )
            for name in names:
                by_name.setdefault(tuple(name.split()), set()).add(expert.id)
            for keyword in keywords:
                counts[keyword] = counts.get(keyword, 0) + 1
        n = max(len(cards), 1)
        idf = {k: math.log(1 + n / c) for k, c in counts.items()}
        longest = max((len(k) for k in by_name), default=1)
        return cls(cards, by_name, idf, longest)

    def named_in(self, text: str) -> dict[str, str]:
        """Experts whose name or trigger word occurs in ``text`` (whole words), and the
        words that name them."""
        found = self._named.get(text)
        if found is None:
            found = self._find_named(text)
            if len(self._named) >= NAMED_MEMO_SIZE:
                self._named.clear()
            self._named[text] = found
        return dict(found)

    def _find_named(self, text: str) -> dict[str, str]:
        tokens = words(text)
        found: dict[str, str] = {}
        for size in range(min(self.longest, len(tokens)), 0, -1):
            for start in range(len(tokens) - size + 1):
                key = tuple(tokens[start : start + size])
                for expert_id in self.by_name.get(key, ()):
                    found.setdefault(expert_id, " ".join(key))
        return found

    def keyword_match(self, phrase: str, expert_id: str) -> float:
        """Share (0–1, rarity-weighted) of the phrase's words that are the expert's
        distinctive tag or name words."""
        card = self.cards.get(expert_id)
        stems = _distinctive_stems(phrase)
        if card is None or not stems:
            return 0.0
        total = sum(self.idf.get(s, math.log(1 + len(self.cards))) for s in stems)
        hit = sum(self.idf.get(s, 0.0) for s in stems if s in card.keywords)
        return hit / total if total else 0.0


@lru_cache(maxsize=4096)
def _distinctive_stems(phrase: str) -> frozenset[str]:
    """Stems of the phrase's words that are not generic (keyword_match asks once per
    candidate)."""
    return frozenset(stem(w) for w in words(phrase) if w not in GENERIC_WORDS and len(w) > 2)
