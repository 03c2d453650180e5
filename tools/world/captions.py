"""Captions of scenes in the words people use, and the parser that reads prompts back.

:func:`caption` words a scene in one of several templates with synonyms ("a red star on a
striped background, neon style", "neon glow, crimson star, stripes"). :func:`parse_prompt`
finds which attribute values a prompt asks for (longest phrase wins; A1111 emphasis and
weights are ignored), which is what the judge scores against.
"""

from __future__ import annotations

import re

import numpy as np

from tools.world.scene import Scene
from tools.world.vocab import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, STYLES


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One wording of ``scene`` (random template and synonyms from ``rng``)."""
    colour = _pick(rng, COLOURS[scene.colour]) if rng.random() < 0.6 else scene.colour
    shape = _pick(rng, SHAPES[scene.shape]) if rng.random() < 0.5 else scene.shape
    size = _pick(rng, SIZES[scene.size]) if rng.random() < 0.6 else ""
    position = _pick(rng, POSITIONS[scene.position]) if rng.random() < 0.5 else ""
    noun = " ".join(w for w in (size, colour, shape) if w)
    background = ""
    if scene.background != "plain" or rng.random() < 0.25:
        background = _pick(rng, BACKGROUNDS[scene.background])
    style = _pick(rng, STYLES[scene.style]) if scene.style != "none" else ""
    template = int(rng.integers(3))
    if template == 0:  # "a red star on a striped background, neon style"
        text = f"{_article(noun)} {noun}"
        if position:
            text += f" {position}"
        if background:
            text += f" on {_article(background)} {background}" if "background" in background \
                else f", {background}"  # fmt: skip
        if style:
            text += f", {style}"
    elif template == 1:  # "neon glow, red star, stripes"
        parts = [style, noun, position, background]
        text = ", ".join(p for p in parts if p)
    else:  # "red star, stripes, neon glow"
        parts = [noun, position, background, style]
        text = ", ".join(p for p in parts if p)
    return re.sub(r"\s+", " ", text).strip()


_TABLES = {"shape": SHAPES, "colour": COLOURS, "background": BACKGROUNDS, "style": STYLES}
_WEIGHT = re.compile(r":\s*-?\d+(\.\d+)?")


def _phrases() -> list[tuple[str, str, str]]:
    """(phrase, attribute, value), longest phrase first."""
    found = []
    for attribute, table in _TABLES.items():
        for value, words in table.items():
            for phrase in {value, *words}:
                if phrase and not (attribute == "style" and value == "none"):
                    found.append((phrase, attribute, value))
    return sorted(found, key=lambda item: -len(item[0]))


def normalise(prompt: str) -> str:
    """Lower case, A1111 emphasis brackets and ``:1.2`` weights removed, one space."""
    text = _WEIGHT.sub("", prompt.lower())
    text = re.sub(r"[()\[\]{}<>]", " ", text)
    return " " + re.sub(r"[^a-z0-9\-]+", " ", text).strip() + " "


def parse_prompt(prompt: str) -> dict[str, str]:
    """The attribute values ``prompt`` asks for (only those it names)."""
    text = normalise(prompt)
    asked: dict[str, str] = {}
    for phrase, attribute, value in _phrases():
        key = f" {phrase} "
        if key in text:
            asked.setdefault(attribute, value)
            text = text.replace(key, " | ")
    return asked
