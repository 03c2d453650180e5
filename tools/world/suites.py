"""The world's Table 1 prompt suites: held-out prompts with their asked attributes and gold experts.

Four suites, drawn from :data:`TABLE_SEED` (no training, calibration, planner or other
evaluation set uses it):

- ``single``: one style or one background an expert serves (round shapes, so one expert);
- ``compositional``: a style and a background (two experts), or both and a pointed shape
  (three: Sharp Angles serves pointed shapes);
- ``plain``: nothing an expert serves (round shapes, plain background, no style): the best
  merge is none, and a merge should at least do no harm;
- ``unusual``: worded unlike any homepage: paraphrases, typos and A1111 emphasis syntax.

Each prompt carries what the judge checks (``asked``: shape and colour always, style and
background when asked) and its gold experts (the slugs of :mod:`tools.world.experts` that
serve its asked style, background and pointed shape; traps and near-duplicates are never
gold). Prompts of the first three suites are worded by :func:`tools.world.captions.caption`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tools.world.captions import caption
from tools.world.experts import EXPERTS
from tools.world.prompts import EXPERT_BACKGROUNDS, EXPERT_STYLES
from tools.world.scene import Scene
from tools.world.vocab import COLOURS, SHAPES

TABLE_SEED = 60_000
Suite = Literal["single", "compositional", "plain", "unusual"]
SUITES: tuple[Suite, ...] = ("single", "compositional", "plain", "unusual")
ROUND_SHAPES = ("circle", "square")  # no expert serves them
COLOURS_LIST = tuple(COLOURS)

# (attribute, value) -> the expert that serves it (no traps: they are never the right choice)
SERVES: dict[tuple[str, str], str] = {
    spec.attribute: spec.slug for spec in EXPERTS if spec.attribute and spec.trap is None
}
SHAPE_EXPERT: dict[str, str] = {  # a shape family's checkpoint (not the general ones)
    shape: spec.slug
    for spec in EXPERTS
    if len(spec.domain.shapes) < len(SHAPES)
    for shape in spec.domain.shapes
}

# Wordings no homepage, tag or caption uses (the world's tokenizer knows none of the new words).
PARAPHRASES: dict[tuple[str, str], str] = {
    ("style", "sketch"): "hand-drawn contour doodle",
    ("style", "pixel"): "low-res videogame sprite look",
    ("style", "watercolor"): "painted with wet pigment washes",
    ("style", "neon"): "glowing tube sign lights",
    ("style", "noir"): "black-and-white detective movie look",
    ("style", "poster"): "bold screenprint comic look",
    ("style", "pastel"): "muted candy tones",
    ("background", "stripes"): "diagonal bands behind it",
    ("background", "checker"): "chessboard tiles behind it",
    ("background", "dots"): "spotted backdrop",
    ("background", "gradient"): "backdrop fading from light to dark",
    ("background", "grid"): "squared notebook paper behind it",
    ("background", "waves"): "undulating ripple backdrop",
    ("background", "night"): "under a starry sky",
}
TYPOS: dict[tuple[str, str], str] = {
    ("style", "sketch"): "skech style",
    ("style", "pixel"): "pixle art",
    ("style", "watercolor"): "watercolr painting",
    ("style", "neon"): "neeon glow",
    ("style", "noir"): "film nior",
    ("style", "poster"): "postr style",
    ("style", "pastel"): "pastell colors",
    ("background", "stripes"): "stripped backround",
    ("background", "checker"): "chekerboard",
    ("background", "dots"): "polka-dot backgrund",
    ("background", "gradient"): "gradiant background",
    ("background", "grid"): "graph papr",
    ("background", "waves"): "wavey background",
    ("background", "night"): "at nite",
}
EXPERT_VALUES: tuple[tuple[str, str], ...] = (
    *(("style", s) for s in EXPERT_STYLES),
    *(("background", b) for b in EXPERT_BACKGROUNDS),
)


@dataclass(frozen=True)
class WorldPrompt:
    """One held-out prompt: its text, suite, what the judge checks and the gold experts."""

    text: str
    suite: Suite
    asked: dict[str, str]
    gold: tuple[str, ...]
    wording: Literal["caption", "paraphrase", "typo", "emphasis"] = "caption"


def gold_experts(asked: dict[str, str]) -> tuple[str, ...]:
    """The experts serving ``asked``: its style's, its background's, its shape family's."""
    gold = [SERVES[(a, asked[a])] for a in ("style", "background") if (a, asked.get(a)) in SERVES]
    if asked["shape"] in SHAPE_EXPERT:
        gold.append(SHAPE_EXPERT[asked["shape"]])
    return tuple(gold)


def _asked(scene: Scene) -> dict[str, str]:
    asked = {"shape": scene.shape, "colour": scene.colour}
    if scene.style != "none":
        asked["style"] = scene.style
    if scene.background != "plain":
        asked["background"] = scene.background
    return asked


def _captioned(suite: Suite, scenes: list[Scene], rng: np.random.Generator) -> list[WorldPrompt]:
    out = []
    for scene in scenes:
        asked = _asked(scene)
        out.append(WorldPrompt(caption(scene, rng), suite, asked, gold_experts(asked)))
    return out


def _scene(rng: np.random.Generator, **fields: str) -> Scene:
    return Scene(**fields, seed=int(rng.integers(2**31)))  # type: ignore[arg-type]


def single_prompts(n_per_value: int = 2, seed: int = TABLE_SEED) -> list[WorldPrompt]:
    """Every expert style and background ``n_per_value`` times, on round shapes."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n_per_value * len(EXPERT_VALUES)):
        attribute, value = EXPERT_VALUES[i % len(EXPERT_VALUES)]
        fields = {"shape": ROUND_SHAPES[i % 2], "colour": COLOURS_LIST[(i * 3) % 8]}
        scenes.append(_scene(rng, **fields, **{attribute: value}))
    return _captioned("single", scenes, rng)


def compositional_prompts(pairs: int = 21, triples: int = 7, seed: int = TABLE_SEED + 1):
    """``pairs`` style × background prompts on round shapes (two experts), then ``triples``
    on pointed shapes (three: the shape family's checkpoint too)."""
    rng = np.random.default_rng(seed)
    pointed = tuple(SHAPE_EXPERT)
    scenes = []
    for i in range(pairs + triples):
        shape = ROUND_SHAPES[i % 2] if i < pairs else pointed[i % len(pointed)]
        scenes.append(
            _scene(
                rng,
                shape=shape,
                colour=COLOURS_LIST[(i * 3 + 1) % 8],
                style=EXPERT_STYLES[i % 7],
                background=EXPERT_BACKGROUNDS[(i * 3 + i // 7) % 7],
            )
        )
    return _captioned("compositional", scenes, rng)


def plain_prompts(n: int = 20, seed: int = TABLE_SEED + 2) -> list[WorldPrompt]:
    """Round shapes in every colour, no style, plain background: no expert serves them."""
    rng = np.random.default_rng(seed)
    scenes = [
        _scene(rng, shape=ROUND_SHAPES[(i // 8) % 2], colour=COLOURS_LIST[i % 8]) for i in range(n)
    ]
    return _captioned("plain", scenes, rng)


def _emphasis(phrase: str, i: int) -> str:
    """A1111 emphasis in its common spellings: ``(x:1.3)``, ``((x))``, ``[x]``, ``(x)``."""
    return (f"({phrase}:1.{3 + i % 4})", f"(({phrase}))", f"[{phrase}]", f"({phrase})")[i % 4]


def unusual_prompts(n_per_wording: int = 8, seed: int = TABLE_SEED + 3) -> list[WorldPrompt]:
    """Paraphrases, typos and A1111 emphasis; every third prompt asks for two attributes."""
    rng = np.random.default_rng(seed)
    out = []
    for w, wording in enumerate(("paraphrase", "typo", "emphasis")):
        for i in range(n_per_wording):
            k = w * n_per_wording + i
            values = [EXPERT_VALUES[(k * 5) % len(EXPERT_VALUES)]]
            if i % 3 == 2:  # a style and a background
                values = [
                    ("style", EXPERT_STYLES[k % 7]),
                    ("background", EXPERT_BACKGROUNDS[k * 3 % 7]),
                ]
            shape = ROUND_SHAPES[k % 2]
            colour = COLOURS_LIST[(k * 5 + 2) % 8]
            colour_word = COLOURS[colour][int(rng.integers(len(COLOURS[colour])))]
            shape_word = SHAPES[shape][int(rng.integers(len(SHAPES[shape])))]
            if wording == "paraphrase":
                phrases = [PARAPHRASES[v] for v in values]
            elif wording == "typo":
                phrases = [TYPOS[v] for v in values]
            else:
                phrases = [_emphasis(_canonical(v), i + j) for j, v in enumerate(values)]
            text = ", ".join([f"{colour_word} {shape_word}", *phrases])
            asked = {"shape": shape, "colour": colour, **dict(values)}
            out.append(WorldPrompt(text, "unusual", asked, gold_experts(asked), wording))  # type: ignore[arg-type]
    return out


def _canonical(value: tuple[str, str]) -> str:
    from tools.world.vocab import BACKGROUNDS, STYLES

    table = STYLES if value[0] == "style" else BACKGROUNDS
    return table[value[1]][0]


def table_prompts() -> list[WorldPrompt]:
    """The four suites in order: 28 single, 28 compositional, 20 plain, 24 unusual (100)."""
    return [*single_prompts(), *compositional_prompts(), *plain_prompts(), *unusual_prompts()]


def small_table_prompts() -> list[WorldPrompt]:
    """Three prompts (single, compositional, plain): the quick version for tests."""
    return [single_prompts()[0], compositional_prompts()[0], plain_prompts()[0]]
