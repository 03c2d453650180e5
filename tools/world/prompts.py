"""The world's held-out prompt sets: evaluation, calibration references, benchmark, chat.

Every set is deterministic and drawn from seeds no training set uses. Compositional prompts
ask for two or three expert attributes at once (a style and a background, plus a palette
or a shape family a checkpoint serves): no training image ever combines two of them.
"""

from __future__ import annotations

import numpy as np

from tools.world.captions import caption
from tools.world.scene import Scene
from tools.world.vocab import BACKGROUNDS, COLOURS, SHAPES, STYLES

EVAL_SEED = 70_000  # captions and images of the evaluation never come from training seeds
REFERENCE_SEED = 80_000
BENCHMARK_SEED = 90_000
EXPERT_STYLES = tuple(s for s in STYLES if s != "none")
EXPERT_BACKGROUNDS = tuple(b for b in BACKGROUNDS if b != "plain")

SHAPES_LIST = tuple(SHAPES)
COLOURS_LIST = tuple(COLOURS)

Prompted = list[tuple[str, Scene]]


def _scene(rng: np.random.Generator, **fields: str) -> Scene:
    return Scene(**fields, seed=int(rng.integers(2**31)))  # type: ignore[arg-type]


def plain_prompts(n_per_combo: int = 1, seed: int = EVAL_SEED) -> Prompted:
    """Held-out plain captions: every shape × colour ``n_per_combo`` times."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_per_combo):
        for shape in SHAPES:
            for colour in COLOURS:
                scene = _scene(rng, shape=shape, colour=colour)
                out.append((caption(scene, rng), scene))
    return out


def attribute_prompts(attribute: str, value: str, n: int, seed: int) -> Prompted:
    """``n`` held-out captions asking for ``attribute = value`` (plain otherwise)."""
    rng = np.random.default_rng(seed)
    shapes, colours = list(SHAPES), list(COLOURS)
    out = []
    for i in range(n):
        fields = {"shape": shapes[i % len(shapes)], "colour": colours[(i * 5 + 3) % len(colours)]}
        fields[attribute] = value
        scene = _scene(rng, **fields)
        out.append((caption(scene, rng), scene))
    return out


def compositional_prompts(n: int, seed: int = EVAL_SEED + 7) -> Prompted:
    """``n`` held-out captions asking for a style *and* a patterned background at once
    (every style × background pair once per 49 prompts)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        scene = _scene(
            rng,
            shape=SHAPES_LIST[i % len(SHAPES_LIST)],
            colour=COLOURS_LIST[(i * 3 + 1) % len(COLOURS_LIST)],
            style=EXPERT_STYLES[i % len(EXPERT_STYLES)],
            background=EXPERT_BACKGROUNDS[(i * 3 + i // 7) % 7],
        )
        out.append((caption(scene, rng), scene))
    return out


def reference_prompts() -> list[str]:
    """Calibration references: one caption per expert style and background, two plain."""
    rng = np.random.default_rng(REFERENCE_SEED)
    styled = [
        _scene(rng, shape=SHAPES_LIST[i % 6], colour=COLOURS_LIST[i], style=s)
        for i, s in enumerate(EXPERT_STYLES)
    ]
    patterned = [
        _scene(rng, shape=SHAPES_LIST[(i + 3) % 6], colour=COLOURS_LIST[(i + 4) % 8], background=b)
        for i, b in enumerate(EXPERT_BACKGROUNDS)
    ]
    plain = [_scene(rng, shape="star", colour="yellow"), _scene(rng, shape="circle", colour="blue")]
    scenes = [*styled, *patterned, *plain]
    return [caption(s, rng) for s in scenes]


def benchmark_prompts(n: int, seed: int = BENCHMARK_SEED) -> list[str]:
    """Held-out benchmark prompts: compositional, single-attribute and plain, interleaved."""
    rng = np.random.default_rng(seed)
    mixed = compositional_prompts(n, seed + 1)
    out: list[str] = []
    for i in range(n):
        kind = i % 4
        if kind in (0, 1):
            out.append(mixed[i][0])
        elif kind == 2:
            attribute = "style" if (i // 4) % 2 == 0 else "background"
            values = EXPERT_STYLES if attribute == "style" else EXPERT_BACKGROUNDS
            value = values[(i // 8) % len(values)]
            out.append(attribute_prompts(attribute, value, 1, seed + 10 + i)[0][0])
        else:
            scene = _scene(rng, shape=SHAPES_LIST[i % 6], colour=COLOURS_LIST[(i * 3) % 8])
            out.append(caption(scene, rng))
    return out


def chat_script() -> list[str]:
    """A few turns a user might type in the world: prompts and refinements."""
    return [
        "a red star on a striped background, neon style",
        "make it more like a watercolor painting",
        "use fewer experts",
        "/show",
        "pixel art, yellow triangle, polka dots",
        "/seed 7",
        "/save --merged",  # into the run's output folder, not the working directory
        "a blue circle at night, film noir",
    ]
