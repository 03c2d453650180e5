"""The no-LLM policy as pure functions (hand-made vectors, exact outcomes)."""

from __future__ import annotations

import numpy as np

from agents.prompt_syntax import parse_prompt
from agents.selection.policy import analysis_from_prompt, filter_by_similarity, windows
from agents.selection.result import SelectedExpert
from agents.selection.state import Candidate
from graph.records import ExpertKind
from tools.settings import SelectionSettings

SETTINGS = SelectionSettings(
    min_similarity=0.3, relative_margin=0.1, redundancy_threshold=0.9, mmr_lambda=0.7
)


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, np.float32)
    return v / np.linalg.norm(v)


def _cand(cid: str, matches: dict[str, float], prompt: float = 0.5) -> Candidate:
    return Candidate(
        id=cid,
        name=cid,
        kind=ExpertKind.PEFT,
        description="",
        matches=matches,
        prompt_similarity=prompt,
    )


def test_thresholds_absolute_relative_and_whole_prompt():
    candidates = [
        _cand("best", {"red hair": 0.70}),
        _cand("close", {"red hair": 0.62}),  # within 0.1 of the best: kept
        _cand("far", {"red hair": 0.55}),  # more than 0.1 below the best: dropped
        _cand("weak", {"lips": 0.25}),  # the best for its query but under 0.3
        _cand("off-topic", {"red hair": 0.69}, prompt=0.2),  # unrelated to the whole prompt
    ]
    vectors = {
        "best": _unit(1, 0, 0),
        "close": _unit(0, 1, 0),
        "far": _unit(0, 0, 1),
        "weak": _unit(1, 1, 0),
        "off-topic": _unit(1, 0, 1),
    }
    kept, dropped = filter_by_similarity(candidates, vectors, SETTINGS)
    assert [k.id for k in kept] == ["best", "close"]
    reasons = {d.id: d.reason for d in dropped}
    assert set(reasons) == {"far", "weak", "off-topic"}
    assert "more than 0.10 below the best match (0.700)" in reasons["far"]
    assert "below the similarity threshold 0.30" in reasons["weak"]
    assert "0.200 to the whole prompt" in reasons["off-topic"]
    assert all(d.stage == "filter" for d in dropped)
    assert kept[0].reason.startswith("no-LLM policy: similarity 0.700 to 'red hair'")


def test_mmr_drops_the_weaker_of_two_near_duplicates():
    candidates = [_cand("eyes-b", {"eyes": 0.60}), _cand("eyes-a", {"eyes": 0.65})]
    vectors = {"eyes-a": _unit(1, 0.1, 0), "eyes-b": _unit(1, 0.15, 0)}
    kept, dropped = filter_by_similarity(candidates, vectors, SETTINGS)
    assert [k.id for k in kept] == ["eyes-a"]
    (twin,) = dropped
    assert twin.id == "eyes-b" and twin.stage == "redundant"
    assert "redundant with eyes-a" in twin.reason


def test_mmr_order_prefers_diversity_and_seeds_count_as_kept():
    candidates = [
        _cand("a", {"q": 0.80}),
        _cand("a-like", {"q": 0.79}),  # cosine 0.8 to a: not redundant but penalised
        _cand("b", {"q": 0.75}),
        _cand("user-twin", {"q": 0.78}),
    ]
    vectors = {
        "a": _unit(1, 0, 0),
        "a-like": _unit(0.8, 0.6, 0),
        "b": _unit(0, 0, 1),
        "user-twin": _unit(0, 1, 0),
        "user": _unit(0, 1, 0.01),
    }
    seed = SelectedExpert(id="user", name="user", kind=ExpertKind.PEFT, reason="tag")
    kept, dropped = filter_by_similarity(candidates, vectors, SETTINGS, [seed])
    # a first; then b beats a-like (penalised for its cosine 0.8 to a) despite a lower score
    assert [k.id for k in kept] == ["a", "b", "a-like"]
    assert [(d.id, d.stage) for d in dropped] == [("user-twin", "redundant")]
    assert "redundant with user" in dropped[0].reason


def test_checkpoint_candidates_use_the_summary_query():
    candidates = [
        _cand("watercolor", {"summary": 0.41}, prompt=0.41),
        _cand("anime", {"summary": 0.29}, prompt=0.29),
    ]
    vectors = {"watercolor": _unit(1, 0), "anime": _unit(0, 1)}
    kept, dropped = filter_by_similarity(
        candidates, vectors, SETTINGS.model_copy(update={"min_similarity": 0.25})
    )
    assert [k.id for k in kept] == ["watercolor"] and [d.id for d in dropped] == ["anime"]


def test_analysis_is_the_prompt_and_all_its_phrases_with_negations_to_avoid():
    parsed = parse_prompt("a cat, (red hair:1.3), no neon, blue sky, ((smile)), not a photo")
    analysis = analysis_from_prompt(
        parsed, SETTINGS.model_copy(update={"max_attributes": 3}), ["blurry"]
    )
    assert analysis.summary == "a cat, red hair, no neon, blue sky, smile, not a photo"
    # every phrase is a need (max_attributes caps only an LLM's analysis) ...
    assert analysis.attributes == ["a cat", "red hair", "blue sky", "smile"]
    # ... but what the prompt rules out is not one: it is avoided, with the negative prompt
    assert analysis.avoid == ["neon", "photo", "blurry"]


def test_a_long_phrase_adds_its_word_pairs_not_across_function_words():
    parsed = parse_prompt("a low poly mountain lake at dawn, oil painting")
    analysis = analysis_from_prompt(parsed, SETTINGS)
    (scene, style) = analysis.components
    assert scene.attributes == [
        "a low poly mountain lake at dawn",
        "low poly",
        "poly mountain",
        "mountain lake",
    ]
    # two content words are already as short as a need gets
    assert style.attributes == ["oil painting"]
    assert windows("a portrait of a man") == []
