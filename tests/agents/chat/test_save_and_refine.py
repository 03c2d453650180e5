"""Chat as users type it (issue 19): "make it more cinematic" refines the prompt in no-LLM
mode, and ``/save NAME.safetensors`` writes the merged model there, not a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.chat.policy import decide

PROMPT = "a castle on a hill"


@pytest.mark.parametrize(
    "message",
    [
        "make it more cinematic",
        "Make it look cinematic.",
        "can you make it a bit more cinematic?",
        "make the image cinematic",
    ],
)
def test_make_it_more_x_refines_the_prompt(message):
    decision = decide(message, PROMPT)
    assert decision.action == "refine" and decision.prompt == f"{PROMPT}, cinematic"


def test_save_to_a_safetensors_name_writes_the_merged_model_there(chat, tmp_path):
    turns = chat(
        "--no-llm",
        input=f"{PROMPT}\nmake it more cinematic\n/save keep/castle.safetensors\n/save x.png\n",
    )
    assert turns.exit_code == 0, turns.stderr
    assert turns[1]["conversation"]["prompt"] == f"{PROMPT}, cinematic"
    saved = turns[2]["saved"]
    model = tmp_path / "keep" / "castle.safetensors"
    assert Path(saved["merged_model"]) == model and model.is_file()
    assert Path(saved["folder"]) == tmp_path / "keep"
    assert all(Path(f).parent == tmp_path / "keep" for f in saved["files"])
    assert "expected a folder" in turns[3]["error"] and not (tmp_path / "x.png").exists()
