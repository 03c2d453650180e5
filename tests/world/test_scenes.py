"""The world's images, captions and prompt sets: deterministic, parseable, held out."""

from __future__ import annotations

import numpy as np
import pytest

from tools.world.captions import caption, parse_prompt
from tools.world.data import SINGLE_DOMAINS, make_set
from tools.world.prompts import (
    EXPERT_BACKGROUNDS,
    EXPERT_STYLES,
    benchmark_prompts,
    compositional_prompts,
    reference_prompts,
)
from tools.world.scene import Scene, render
from tools.world.vocab import RGB, SHAPES


def test_render_is_deterministic_and_draws_the_asked_colour():
    scene = Scene("square", "blue", size="large", seed=3)
    first, second = render(scene), render(scene)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, second)
    centre = first[13:19, 13:19].reshape(-1, 3).astype(int)
    assert np.abs(centre - np.array(RGB["blue"])).max() <= 12


def test_styles_and_backgrounds_change_the_image():
    plain = render(Scene("star", "red", seed=1))
    for fields in ({"style": "sketch"}, {"style": "noir"}, {"background": "stripes"}):
        assert np.abs(render(Scene("star", "red", seed=1, **fields)).astype(int) - plain).mean() > 5


def test_unknown_values_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        Scene("hexagon", "red")


def test_captions_parse_back_to_their_scenes():
    rng = np.random.default_rng(0)
    data = make_set(SINGLE_DOMAINS, 300, seed=5)
    for scene, text in zip(data.scenes, data.captions, strict=True):
        asked = parse_prompt(text)
        assert asked["shape"] == scene.shape and asked["colour"] == scene.colour, text
        if scene.style != "none":
            assert asked["style"] == scene.style, text
        if scene.background != "plain":
            assert asked["background"] == scene.background, text
    assert caption(data.scenes[0], rng) != "" and len(set(data.captions)) > 250


def test_parse_ignores_a1111_emphasis_and_weights():
    asked = parse_prompt("((Crimson)) [star], (neon glow:1.3), <lora:x:0.8> stripes")
    assert asked == {"colour": "red", "shape": "star", "style": "neon", "background": "stripes"}


def test_compositional_prompts_cover_every_pair_and_are_never_trained_on():
    prompts = compositional_prompts(49)
    pairs = {(s.style, s.background) for _, s in prompts}
    assert pairs == {(s, b) for s in EXPERT_STYLES for b in EXPERT_BACKGROUNDS}
    for domain in SINGLE_DOMAINS:  # every training domain has at most one expert attribute
        assert len(domain.styles) == 1 and len(domain.backgrounds) == 1
        assert domain.styles == ("none",) or domain.backgrounds == ("plain",)
    for text, scene in prompts:
        assert parse_prompt(text) | {"shape": scene.shape} == parse_prompt(text)
        assert {"style", "background"} <= set(parse_prompt(text))


def test_prompt_sets_are_fixed_and_ask_for_what_they_should():
    refs = reference_prompts()
    assert (
        refs == reference_prompts()
        and len(refs) == len(EXPERT_STYLES) + len(EXPERT_BACKGROUNDS) + 2
    )
    asked = [parse_prompt(p) for p in refs]
    assert {a.get("style") for a in asked} >= set(EXPERT_STYLES)
    assert {a.get("background") for a in asked} >= set(EXPERT_BACKGROUNDS)
    bench = benchmark_prompts(16)
    assert bench == benchmark_prompts(16) and not set(bench) & set(refs)
    assert all(parse_prompt(p)["shape"] in SHAPES for p in bench)
