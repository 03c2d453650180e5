"""``diffgraph chat`` end to end in no-LLM mode on the tiny backends, driven through stdin."""

from __future__ import annotations

import json
from pathlib import Path

from tests.agents.chat.conftest import trace_files
from tools.tracing import read_trace

SESSION = """\
a portrait of a woman with red hair, anime style, watercolor
more cinematic lighting
drop the anime style
use fewer experts
/show
/pin lora-castle
/ban lora-cinematic
/seed 7
/save saved --merged
quit
this line is never read
"""


def loras(report: dict) -> list[str]:
    return [e["expert_id"] for e in report["conversation"]["last"]["recipe"]["loras"]]


def test_scripted_session_refines_pins_bans_reseeds_and_saves(chat, tmp_path):
    turns = chat("--no-llm", "--thread", "demo-1", input=SESSION)
    assert turns.exit_code == 0, turns.stderr
    assert [r["decision"]["action"] for r in turns.reports] == [
        "new_prompt",
        "refine",
        "refine",
        "fewer_experts",
        "show",
        "pin",
        "ban",
        "seed",
        "save",
        "quit",
    ]
    assert all(r["chat_mode"] == "no-llm" and r["thread"] == "demo-1" for r in turns.reports)
    assert [r["interpreter"] for r in turns.reports[:4]] == ["rules"] * 4
    assert {r["interpreter"] for r in turns.reports[4:]} == {"command"}
    prompts = [r["conversation"]["prompt"] for r in turns.reports]
    assert prompts[:3] == [
        "a portrait of a woman with red hair, anime style, watercolor",
        "a portrait of a woman with red hair, anime style, watercolor, cinematic lighting",
        "a portrait of a woman with red hair, watercolor, cinematic lighting",
    ]
    assert set(prompts[3:]) == {prompts[2]}
    assert [r["generated"] for r in turns.reports] == [True] * 4 + [False, True, True, True] + [
        False
    ] * 2

    first, more, dropped, fewer, show, pin, ban, seed, save, _ = turns.reports
    assert "lora-cinematic" in loras(more) and "lora-cinematic" not in loras(first)
    assert loras(fewer) == ["lora-cinematic", "lora-red-hair"]
    assert len(loras(fewer)) == len(loras(dropped)) - 1 == fewer["conversation"]["max_loras"]
    assert {**show["conversation"], "turn": 4} == fewer["conversation"]  # /show changes nothing
    assert "lora-castle" in loras(pin) and len(loras(pin)) == fewer["conversation"]["max_loras"]
    # the bound keeps the pin and the best of the rest; a ban lets the next one in
    assert loras(pin) == ["lora-cinematic", "lora-castle"]
    assert loras(ban) == ["lora-red-hair", "lora-castle"]
    assert ban["conversation"]["pinned"] == ["lora-castle"]
    assert ban["conversation"]["banned"] == ["lora-cinematic"]
    assert seed["conversation"]["last"]["recipe"]["seed"] == 7
    # a new prompt selects again; pins, bans, bound and seed reuse the last selection
    assert "same prompt: the last selection was reused" in pin["notes"]
    assert all(r["demo"] for r in turns.reports if r["generated"])

    last = seed["conversation"]["last"]
    assert Path(last["images"][0]).is_file()
    assert Path(last["images"][0]).parent == tmp_path / "out" / "demo-1" / "turn-008"
    saved = save["saved"]
    names = sorted(Path(f).name for f in saved["files"])
    stem = Path(last["recipe_path"]).name.removesuffix(".recipe.json")
    assert names == sorted(
        [f"{stem}-0.png", f"{stem}.recipe.json", f"{stem}.a1111.txt", f"{stem}.comfyui.json"]
    )
    assert Path(saved["folder"]) == tmp_path / "saved"
    assert Path(saved["files"][0]).read_bytes() == Path(last["images"][0]).read_bytes()
    recipe = json.loads((tmp_path / "saved" / f"{stem}.recipe.json").read_text())
    assert recipe["seed"] == 7 and [e["expert_id"] for e in recipe["loras"]] == loras(seed)
    a1111 = (tmp_path / "saved" / f"{stem}.a1111.txt").read_text()
    assert "<lora:lora-castle:0.5>" in a1111 and "Seed: 7" in a1111
    comfy = json.loads((tmp_path / "saved" / f"{stem}.comfyui.json").read_text())
    assert {n["class_type"] for n in comfy.values()} >= {"CheckpointLoaderSimple", "LoraLoader"}
    from safetensors import safe_open

    with safe_open(saved["merged_model"], "pt") as merged:
        assert any(k.startswith("model.diffusion_model.") for k in merged.keys())  # noqa: SIM118


def test_every_turn_writes_a_valid_trace_linking_its_generation(chat, tmp_path):
    turns = chat("--no-llm", input="red hair, watercolor\n/show\n/seed\n")
    assert turns.exit_code == 0, turns.stderr
    data = tmp_path / "data"
    chat_traces = trace_files(data, "chat")
    assert sorted(str(p) for p in chat_traces) == sorted(r["trace_path"] for r in turns.reports)
    generate_ids = {p.stem for p in trace_files(data, "generate")}
    for report in turns.reports:
        events = read_trace(Path(report["trace_path"]))  # validates every line
        assert events[0].event == "run_start" and events[-1].event == "run_end"
        assert {e.agent for e in events} == {"chat"} and {e.run_id for e in events} == {
            report["run_id"]
        }
        end = events[-1]
        assert end.mode == "no-llm" and end.data["thread"] == report["thread"]
        assert end.data["generate_run_id"] == report["generate_run_id"]
        assert events[0].data["chat_mode"] == "no-llm"
        if report["generated"]:
            assert report["generate_run_id"] in generate_ids
            call = next(e for e in events if e.event == "tool_call")
            assert call.outputs["generate_run_id"] == report["generate_run_id"]
        else:
            assert report["generate_run_id"] is None
    assert [r["generated"] for r in turns.reports] == [True, False, True]
    assert turns.reports[2]["conversation"]["seed"] == 1
    # each generation has its own selection trace (one run per file)
    for path in trace_files(data, "selection"):
        assert [e.event for e in read_trace(path)].count("run_start") == 1


def test_mistakes_are_reported_and_the_session_goes_on(chat, tmp_path):
    script = tmp_path / "turns.txt"
    script.write_text(
        "# a comment line\n"
        "/save\n"
        "drop dragons\n"
        "/frobnicate\n"
        f"{'x' * 2001}\n"
        "a castle on a hill\n"
        "/pin nope\n"
        "/pin xl-lora\n"
        "/pin lora-old\n"
        "/unban lora-castle\n"
        "drop dragons\n"
        "more experts\n"
    )
    turns = chat("--no-llm", "--script", str(script))
    assert turns.exit_code == 0, turns.stderr
    assert "unknown command /frobnicate" in turns.stderr  # the turn failed; the next ran
    assert "the message has 2001 characters: write at most 2000" in turns.stderr
    errors = [(r["request"], r["error"]) for r in turns.reports if r["error"]]
    assert errors == [
        ("/save", "nothing to save yet: draw an image first"),
        ("/pin nope", "no expert 'nope' in the graph: copy an id from /show"),
        (
            "/pin xl-lora",
            "expert 'xl-lora' is for sdxl but the loaded base model is sd15: pin an expert of sd15",
        ),
        ("/pin lora-old", "expert 'lora-old' is deprecated: pin its newer version (lora-castle)"),
    ]
    by_request = {r["request"]: r for r in turns.reports}
    # with no prompt, "drop dragons" is a new prompt; then it removes nothing
    assert turns.reports[1]["conversation"]["prompt"] == "drop dragons"
    assert turns.reports[-2]["notes"] == ["the prompt is unchanged"]
    assert not turns.reports[-2]["generated"]
    assert by_request["/unban lora-castle"]["notes"] == ["lora-castle was not banned"]
    assert "no LoRA bound is set" in by_request["more experts"]["notes"][0]
    assert turns.reports[-1]["conversation"]["pinned"] == []
    assert len(trace_files(tmp_path / "data", "chat")) == len(turns.reports) + 2  # + failures


def test_terminal_rendering(chat):
    turns = chat("--no-llm", input="a castle on a hill\n/help\n/show\n", json_mode=False)
    assert turns.exit_code == 0, turns.stderr
    out = turns.stdout
    assert "no-LLM (rules edit the prompt text)" in out and "DEMO: tiny random weights" in out
    assert "read as new_prompt (rules): rule: a new prompt" in out
    assert "experts of turn 1 · planner equal · selection no-llm · DEMO" in out
    assert "/pin ID [ID ...]" in out and "drop X, remove X, no X, without X" in out
    assert "seed 0 · LoRA bound selection decides" in out
    assert "resume it with `diffgraph chat --thread chat-" in out
