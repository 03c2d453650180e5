"""The world's Table 1 suites: held out, deterministic, labelled with asked attributes and gold."""

from __future__ import annotations

from collections import Counter

from tools.world.captions import parse_prompt
from tools.world.experts import EXPERTS
from tools.world.prompts import benchmark_prompts, reference_prompts
from tools.world.suites import (
    PARAPHRASES,
    SERVES,
    TYPOS,
    gold_experts,
    small_table_prompts,
    table_prompts,
)
from tools.world.vocab import ATTRIBUTES

TRAPS = {s.slug for s in EXPERTS if s.trap}


def test_the_suites_are_deterministic_and_large_enough():
    prompts = table_prompts()
    assert prompts == table_prompts()
    assert len(prompts) >= 100
    assert Counter(p.suite for p in prompts) == {
        "single": 28,
        "compositional": 28,
        "plain": 20,
        "unusual": 24,
    }
    assert len({p.text for p in prompts}) == len(prompts)
    assert small_table_prompts() == [prompts[0], prompts[28], prompts[56]]


def test_no_prompt_comes_from_a_training_or_calibration_set():
    from agents.demo.run import TRAIN_PROMPT_SEED

    seen = set(benchmark_prompts(96, seed=TRAIN_PROMPT_SEED)) | set(reference_prompts())
    assert not seen & {p.text for p in table_prompts()}


def test_every_prompt_carries_what_the_judge_checks_and_its_gold_experts():
    for p in table_prompts():
        assert {"shape", "colour"} <= set(p.asked) <= set(ATTRIBUTES), p
        assert all(v in ATTRIBUTES[a] for a, v in p.asked.items())
        assert p.gold == gold_experts(p.asked)
        assert not set(p.gold) & TRAPS
        if p.suite == "single":
            assert len(p.gold) == 1 and len(p.asked) == 3
        elif p.suite == "compositional":
            assert len(p.gold) in (2, 3) and {"style", "background"} <= set(p.asked)
        elif p.suite == "plain":
            assert p.gold == () and set(p.asked) == {"shape", "colour"}
        else:
            assert p.wording in ("paraphrase", "typo", "emphasis") and p.gold


def test_gold_names_the_expert_of_each_asked_value():
    assert gold_experts(
        {"shape": "star", "colour": "red", "style": "neon", "background": "night"}
    ) == (
        "neon-nights",
        "midnight",
        "sharp-angles",
    )
    assert gold_experts({"shape": "circle", "colour": "red"}) == ()
    assert gold_experts({"shape": "square", "colour": "red", "background": "checker"}) == (
        "checker-board",
    )  # not the over-trained Checker MAX
    assert set(SERVES) == set(PARAPHRASES) == set(TYPOS)


def test_captioned_prompts_say_what_they_ask_and_unusual_ones_hide_it():
    for p in table_prompts():
        parsed = parse_prompt(p.text)
        experts = {a: v for a, v in p.asked.items() if a in ("style", "background")}
        if p.wording in ("caption", "emphasis"):  # A1111 emphasis is read through
            assert {a: parsed.get(a) for a in p.asked} == p.asked, p.text
        else:  # paraphrases and typos: the world's words do not name the expert attribute
            assert all(parsed.get(a) != v for a, v in experts.items()), p.text
    emphasis = [p.text for p in table_prompts() if p.wording == "emphasis"]
    assert any(":1." in t for t in emphasis) and any("((" in t for t in emphasis)
    assert any("[" in t for t in emphasis)
