"""The deterministic side of the chat: slash commands and the no-LLM refinement rules."""

from __future__ import annotations

import re

import pytest

from agents.chat.errors import ChatError
from agents.chat.policy import add_phrase, decide, parse_command, remove_phrases

PROMPT = "a portrait of a woman with red hair, anime style, soft light"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("more cinematic lighting", f"{PROMPT}, cinematic lighting"),
        ("add a red scarf", f"{PROMPT}, a red scarf"),
        ("Please add fog.", f"{PROMPT}, fog"),
        ("more soft light", "a portrait of a woman with red hair, anime style, (soft light:1.1)"),
        ("drop the anime style", "a portrait of a woman with red hair, soft light"),
        ("remove anime", "a portrait of a woman with red hair, soft light"),
        ("no soft light", "a portrait of a woman with red hair, anime style"),
        ("without the light", "a portrait of a woman with red hair, anime style"),
    ],
)
def test_refinements_edit_the_prompt_text(message, expected):
    decision = decide(message, PROMPT)
    assert decision.action == "refine" and decision.prompt == expected
    assert decision.reasoning.startswith("rule: ")


def test_more_of_a_phrase_raises_its_emphasis_step_by_step():
    once, why = add_phrase("castle, (fog:1.1)", "fog")
    assert once == "castle, (fog:1.2)" and "weight 1.2" in why
    assert add_phrase("castle, (fog)", "FOG")[0] == "castle, (fog:1.2)"  # A1111 (x) is 1.1


def test_a_refinement_never_makes_the_prompt_too_long():
    long = "castle, " + "x" * 1985
    decision = decide("add a moat", long)
    assert decision.prompt == long and "would pass 2000 characters" in decision.reasoning


def test_removal_falls_back_to_the_core_word_and_refuses_to_empty_the_prompt():
    # no phrase says "anime style": a trailing "style" is dropped, then "anime" matches
    prompt, why = remove_phrases("a girl, anime, soft light", "the anime style")
    assert prompt == "a girl, soft light" and why == "removed 'anime'"
    # a word inside another word does not match
    assert remove_phrases("a cat, catalan village", "cat")[0] == "catalan village"
    unchanged, why = remove_phrases(PROMPT, "dragons")
    assert unchanged == PROMPT and "nothing in the prompt mentions 'dragons'" in why
    alone, why = remove_phrases("anime girl", "anime")
    assert alone == "anime girl" and "would leave no prompt" in why


@pytest.mark.parametrize(
    ("message", "action", "bound"),
    [
        ("use fewer experts", "fewer_experts", None),
        ("fewer LoRAs please", "fewer_experts", None),
        ("ok, less models", "fewer_experts", None),
        ("more experts", "more_experts", None),
        ("use at most 2 loras", "set_loras", 2),
        ("only 1 expert", "set_loras", 1),
    ],
)
def test_expert_count_requests(message, action, bound):
    decision = decide(message, PROMPT)
    assert (decision.action, decision.max_loras, decision.prompt) == (action, bound, None)


def test_anything_else_is_a_new_prompt():
    assert decide("a castle at dusk", PROMPT).model_dump(include={"action", "prompt"}) == {
        "action": "new_prompt",
        "prompt": "a castle at dusk",
    }
    # with no prompt yet, "add X" starts one and "no X" is just a prompt
    assert decide("add a castle", None).prompt == "a castle"
    assert decide("no man's sky", None).prompt == "no man's sky"


def test_commands():
    assert parse_command("a castle") is None
    assert parse_command("/prompt more fog").model_dump(include={"action", "prompt"}) == {
        "action": "new_prompt",
        "prompt": "more fog",
    }
    assert parse_command("/pin a, b").expert_ids == ["a", "b"]
    assert parse_command("/UNBAN x").action == "unban"
    assert parse_command("/seed 42").seed == 42 and parse_command("/seed").seed is None
    assert (
        parse_command("/loras 2").max_loras == 2 and parse_command("/loras auto").max_loras is None
    )
    save = parse_command('/save "my folder" --merged')
    assert (save.action, save.path, save.merged) == ("save", "my folder", True)
    assert parse_command("/save").path is None
    assert {parse_command(w).action for w in ("quit", "EXIT", "/quit", "/exit")} == {"quit"}
    assert parse_command("/help").action == parse_command("?").action == "help"
    assert parse_command("/show").action == "show"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("/frobnicate", "unknown command /frobnicate: expected one of /prompt, /show"),
        ("/seed x", "/seed 'x': expected a whole number"),
        ("/loras 99", "expected a whole number from 0 to 32"),
        ("/pin", "/pin needs 1 to 16 expert ids, got 0"),
        ("/ban " + " ".join(f"x{i}" for i in range(17)), "/ban needs 1 to 16 expert ids, got 17"),
        ("/prompt", "/prompt needs the prompt text"),
        ("/save a b", "/save takes one folder, got 2"),
        ('/save "open', "quote a folder with spaces"),
    ],
)
def test_malformed_commands_say_what_was_expected(command, message):
    with pytest.raises(ChatError, match=re.escape(message)):
        parse_command(command)
