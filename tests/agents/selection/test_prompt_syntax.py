"""Reading in-the-wild prompt syntax (agents/prompt_syntax.py)."""

from __future__ import annotations

import pytest

from agents.prompt_syntax import CLIP_TOKEN_LIMIT, parse_prompt


def _phrases(text: str) -> list[tuple[str, float]]:
    return [(p.text, p.weight) for p in parse_prompt(text).phrases]


def test_plain_prompt_splits_on_commas_and_with():
    parsed = parse_prompt("a portrait of a young woman with red hair, watercolor")
    assert parsed.text == "a portrait of a young woman with red hair, watercolor"
    assert _phrases(parsed.raw) == [
        ("a portrait of a young woman", 1.0),
        ("red hair", 1.0),
        ("watercolor", 1.0),
    ]
    assert parsed.lora_tags == [] and not parsed.is_blank


def test_a1111_attention_weights():
    assert _phrases("(masterpiece:1.2), ((best quality)), [blurry], (a (cat:1.5))") == [
        ("masterpiece", 1.2),
        ("best quality", 1.21),
        ("blurry", pytest.approx(1 / 1.1, abs=1e-4)),
        ("a cat", 1.65),
    ]
    assert parse_prompt("(masterpiece:1.2), [blurry]").text == "masterpiece, blurry"


def test_alternation_editing_escapes_and_break():
    parsed = parse_prompt(r"a [cat|dog|fox] in a \(hat\), [day:night:0.5] BREAK [rain:10]")
    assert parsed.text == "a cat or dog or fox in a (hat), day night, rain"
    assert [p.text for p in parsed.phrases] == [
        "a cat or dog or fox in a (hat)",
        "day night",
        "rain",
    ]


def test_lora_tags_are_taken_out_with_their_weights():
    parsed = parse_prompt(
        "1girl <lora:redHair_v2:0.8>, <LORA:detail tweaker> <lyco:Style:0.5:0.3> <hypernet:x:1>"
    )
    assert [(t.name, t.weight, t.tag) for t in parsed.lora_tags] == [
        ("redHair_v2", 0.8, "lora"),
        ("detail tweaker", 1.0, "lora"),
        ("Style", 0.5, "lyco"),
    ]
    assert parsed.other_tags == ["<hypernet:x:1>"]
    assert parsed.text == "1girl"


def test_emoji_are_read_by_name():
    parsed = parse_prompt("🐱 in space 🚀✨, 👩🏽‍🎨")
    assert parsed.emoji == ["🐱", "🚀", "✨", "👩", "🎨"]
    assert parsed.text == "cat face in space rocket sparkles, woman artist palette"


def test_non_latin_text_and_fullwidth_punctuation():
    parsed = parse_prompt("一个红头发的女孩，水彩画")
    assert [p.text for p in parsed.phrases] == ["一个红头发的女孩", "水彩画"]
    assert parsed.non_latin_share == 1.0
    assert parse_prompt("café au lait").non_latin_share == 0.0


def test_clip_token_estimate_and_limit():
    short = parse_prompt("a red fox, 4k")
    assert short.clip_tokens == 5 and not short.over_clip_limit  # a red fox , 4k
    long = parse_prompt(", ".join(["highly detailed"] * 30))
    assert long.clip_tokens > CLIP_TOKEN_LIMIT and long.over_clip_limit


@pytest.mark.parametrize("text", ["", "   \n\t", ", ,", "<hypernet:x:1>", "(:1.2)"])
def test_blank_prompts(text):
    assert parse_prompt(text).is_blank


def test_a_prompt_of_only_lora_tags_is_not_blank():
    parsed = parse_prompt("<lora:foo:0.5>")
    assert not parsed.is_blank and parsed.text == "" and parsed.phrases == []


def test_duplicate_phrases_are_kept_once():
    assert [p.text for p in parse_prompt("cat, Cat, cat. dog").phrases] == ["cat", "dog"]
