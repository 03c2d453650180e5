"""The need-aware no-LLM policy: reading needs out of text, and the filter on hand-made
vectors (exact outcomes), then on the demo catalogue with the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from agents.selection.needs import (
    LexicalIndex,
    expert_role,
    language_hint,
    negated,
    split_negative,
    stem,
)
from agents.selection.policy import NeedEvidence, calibration_evidence, filter_by_need
from agents.selection.state import Candidate
from graph.records import BaseFamily, Expert, ExpertKind
from tools.settings import SelectionSettings

SETTINGS = SelectionSettings()


def test_negative_prompt_and_parameters_are_split_off():
    raw = "a cat, watercolor\nNegative prompt: blurry, neon\nSteps: 20, Sampler: Euler a"
    assert split_negative(raw) == ("a cat, watercolor", "blurry, neon")
    assert split_negative("a cat, watercolor") == ("a cat, watercolor", "")


@pytest.mark.parametrize(
    ("phrase", "ruled_out"),
    [
        ("no neon", "neon"),
        ("not a photo", "photo"),
        ("without any text", "text"),
        ("don't use film grain", "film grain"),
        ("neon signs", None),
        ("nothing else", None),
        ("no", None),
    ],
)
def test_negation(phrase, ruled_out):
    assert negated(phrase) == ruled_out


def test_language_hint():
    assert language_hint("un retrato de una mujer con el pelo rojo, acuarela") == "Spanish"
    assert language_hint("une femme avec des fleurs dans la forêt") == "French"
    assert language_hint("a portrait of a woman with red hair, watercolor") is None
    assert language_hint("cat") is None


def test_stem_meets_singular_plural_and_photography():
    assert stem("cats") == stem("cat") == "cat"
    assert stem("photography") == stem("photo") == "photo"
    assert stem("detailed") == stem("detail")


def _expert(eid: str, name: str, kind=ExpertKind.PEFT, tags=(), triggers=(), text="") -> Expert:
    return Expert(
        id=eid,
        kind=kind,
        base=BaseFamily.SD15,
        name=name,
        description=text or name,
        tags=list(tags),
        trigger_words=list(triggers),
    )


EXPERTS = [
    _expert("nova", "Captain Nova", tags=["character", "pilot"], triggers=["cpt_nova"]),
    _expert("wc", "Watercolor Wash", tags=["style", "watercolor"], triggers=["wtrclr style"]),
    _expert("neon", "Neon Noir", tags=["style", "cyberpunk", "neon"]),
    _expert("photo", "Photoreal", kind=ExpertKind.CKPT, tags=["photorealistic"]),
    _expert("detail", "Detail Tweaker", tags=["detail", "enhancer"]),
]


def test_lexical_index_finds_names_and_trigger_words_as_whole_words():
    index = LexicalIndex.build(EXPERTS)
    assert index.named_in("captain nova on the bridge") == {"nova": "captain nova"}
    assert index.named_in("cpt_nova, WTRCLR style") == {"nova": "cpt nova", "wc": "wtrclr style"}
    assert index.named_in("a supernova") == {}  # not a whole word
    assert index.keyword_match("watercolor", "wc") == 1.0
    assert index.keyword_match("highly detailed", "detail") == 1.0  # intensifiers are generic
    assert index.keyword_match("a cat", "wc") == 0.0


def test_roles_from_kind_tags_and_text():
    roles = {e.id: expert_role(e) for e in EXPERTS}
    assert roles == {
        "nova": "character",
        "wc": "style",
        "neon": "style",
        "photo": "checkpoint",
        "detail": "detail",
    }
    assert expert_role(_expert("x", "Rim", text="neon rim lighting for portraits")) == "lighting"


# Hand-made evidence: 4-d vectors, each expert's background cosines mean 0 and sd 0.1, so a
# phrase's need score is 10 x its cosine (+ 2 x its share of the expert's tag words).
def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, np.float32)
    return v / np.linalg.norm(v)


VECTORS = {
    "wc": _unit(1, 0, 0, 0),
    "neon": _unit(0, 1, 0, 0),
    "photo": _unit(0, 0, 1, 0),
    "nova": _unit(0, 0, 0, 1),
    "detail": _unit(1, 1, 1, 1),
}


def _evidence(phrases: dict[str, np.ndarray], avoid: dict[str, np.ndarray] | None = None):
    avoid = avoid or {}
    return NeedEvidence(
        phrases=list(phrases),
        phrase_vectors=np.stack(list(phrases.values())) if phrases else np.zeros((0, 4)),
        avoid=list(avoid),
        avoid_vectors=np.stack(list(avoid.values())) if avoid else np.zeros((0, 4)),
        vectors=VECTORS,
        background={i: (0.0, 0.1) for i in VECTORS},
        lexical=LexicalIndex.build(EXPERTS),
        calibration={},
    )


def _candidates() -> list[Candidate]:
    kinds = {e.id: e.kind for e in EXPERTS}
    return [
        Candidate(id=i, name=i, kind=kinds[i], description="", matches={"summary": 0.5})
        for i in VECTORS
    ]


def _kept(phrases, avoid=None) -> tuple[list[str], dict[str, str]]:
    kept, dropped = filter_by_need(_candidates(), _evidence(phrases, avoid), SETTINGS)
    return [k.id for k in kept], {d.id: d.reason for d in dropped}


def test_a_phrase_far_from_every_expert_selects_nothing():
    # boilerplate ("trending on artstation"): cosine 0.3 to a style is 3 sd, below the bar
    kept, dropped = _kept({"trending on artstation": _unit(0.3, 0.3, 0.3, -0.85)})
    assert kept == []
    assert "no phrase asks for this" in dropped["wc"]


def test_each_phrase_serves_one_need_its_best_expert():
    # "painted neon" is near both styles; only the nearer one is taken
    kept, dropped = _kept({"painted neon": _unit(0.8, 0.6, 0, 0)})
    assert kept == ["wc"]
    assert "a better expert was chosen for 'painted neon'" in dropped["neon"]


def test_a_named_expert_is_always_taken_and_an_unnamed_character_is_not():
    # close to the character's description, but not close enough without its name
    kept, _ = _kept({"a space pilot": _unit(0, 0, 0.85, 0.5)})
    assert "nova" not in kept
    kept, _ = _kept({"captain nova": _unit(0, 0, 0.95, 0.3)})
    assert kept == ["nova"]


def test_a_checkpoint_is_taken_when_a_phrase_asks_for_it():
    kept, _ = _kept({"photorealistic": _unit(0, 0, 1, 0), "watercolor": _unit(1, 0, 0, 0)})
    assert kept == ["photo", "wc"]  # the checkpoint first


def test_what_the_prompt_rules_out_bans_the_experts_it_would_select():
    kept, dropped = _kept({"watercolor": _unit(1, 0, 0, 0)}, avoid={"neon": _unit(0, 1, 0, 0)})
    assert kept == ["wc"]
    kept, dropped = _kept({"neon noir": _unit(0, 1, 0, 0)}, avoid={"neon": _unit(0, 1, 0, 0)})
    assert kept == [] and "the prompt rules out 'neon'" in dropped["neon"]


def test_calibration_edges_weigh_experts_by_how_they_scored_near_the_prompt():
    prompt = _unit(1, 0, 0, 0)
    refs = np.stack([_unit(1, 0.1, 0, 0), _unit(0, 1, 0, 0)])  # near, far
    experts = np.array(["a", "b", "a", "b"], dtype=object)
    edge_refs = np.array([0, 0, 1, 1])
    scores = np.array([[0.9], [0.1], [0.1], [0.9]], np.float32)  # a wins near, b far
    z = calibration_evidence(prompt, ["a", "b"], refs, experts, edge_refs, scores)
    assert z["a"] == pytest.approx(1.0) and z["b"] == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def demo_graph(tmp_path_factory, embedder):
    from evals.selection_needs import catalogue
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph

    graph = UniversalGraph(GraphConfig(data_dir=tmp_path_factory.mktemp("needs")), embedder)
    graph.add_experts(catalogue())
    yield graph
    graph.close()


@pytest.mark.parametrize(
    ("prompt", "wanted", "unwanted"),
    [
        # boilerplate and artist names select nothing; the medium is found
        (
            "a lighthouse on a cliff, watercolor, by winslow homer, trending on artstation, "
            "highly detailed, 8k",
            {"demo-watercolor-wash"},
            {"demo-captain-nova", "demo-fantasy-art"},
        ),
        # a subject noun does not pull in a character; plain prompts abstain
        ("a panda eating bamboo in the forest", set(), {"demo-chef-bao"}),
        ("a birthday cake with candles", set(), {"demo-cozy-cabin"}),
        # negation and the negative prompt ban
        ("a city street at night in the rain, no neon", set(), {"demo-neon-noir"}),
        (
            "a woman in a flower field, golden hour\nNegative prompt: cyberpunk, neon",
            {"demo-golden-hour"},
            {"demo-neon-noir", "demo-neon-rim-light"},
        ),
        # a character named by its name is taken
        ("captain nova in her cockpit, anime", {"demo-captain-nova"}, set()),
    ],
)
def test_demo_catalogue(demo_graph, make_context, prompt, wanted, unwanted):
    from agents.selection import select

    result = select(prompt, make_context(demo_graph))
    assert result.mode == "no-llm"
    assert wanted <= set(result.expert_ids)
    assert not unwanted & set(result.expert_ids)
