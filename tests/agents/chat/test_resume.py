"""Threads resume by id; a failed or killed turn leaves its thread as it was."""

from __future__ import annotations

import shutil

import pytest

from agents.chat.errors import ChatError
from agents.chat.graph import make_context, open_session
from tools.tracing import read_trace


def test_resume_restores_prompt_pins_bound_and_seed(chat):
    first = chat(
        "--no-llm",
        "--thread",
        "t-1",
        "--seed",
        "3",
        input="a castle on a hill\n/pin lora-red-hair\n",
    )
    assert first.exit_code == 0, first.stderr
    before = first[-1]["conversation"]
    assert before["pinned"] == ["lora-red-hair"] and before["seed"] == 3

    second = chat("--no-llm", "--thread", "t-1", input="/show\n/loras 1\nmore fog\n")
    assert second.exit_code == 0, second.stderr
    assert "thread t-1 (resumed at turn 2)" in second.stderr
    show, bound, fog = second.reports
    assert bound["changes"] == ["at most 1 LoRA"]
    assert show["turn"] == 3 and show["conversation"] == {**before, "turn": 3}
    assert fog["conversation"]["prompt"] == "a castle on a hill, fog"
    recipe = fog["conversation"]["last"]["recipe"]
    assert recipe["seed"] == 3 and [e["expert_id"] for e in recipe["loras"]] == ["lora-red-hair"]

    third = chat("--no-llm", "--thread", "t-1", "--seed", "9", input="/show\n")
    assert third[0]["conversation"]["seed"] == 9  # --seed replaces a resumed thread's seed
    assert third[0]["conversation"]["max_loras"] == 1

    bad = chat("--thread", "../escape", input="/show\n")
    assert bad.exit_code == 2 and "thread id '../escape' is not valid" in bad.stderr


@pytest.fixture
def session_factory(tmp_path, chat_template, tiny_sd15_files, embedder):
    """``open_session`` on a private copy of the chat graph, with the tiny generator."""
    from agents.pipeline.context import build_context
    from graph.universal import UniversalGraph
    from tools.generation.generator import Generator
    from tools.settings import Settings

    shutil.copytree(chat_template, tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data", base_model=tiny_sd15_files.folder)
    graph = UniversalGraph(settings.graph, embedder)
    pipeline = build_context(
        settings, "equal", graph=graph, generator=Generator.from_path(tiny_sd15_files.folder)
    )
    ctx = make_context(pipeline, tmp_path / "out")
    yield lambda: open_session(tmp_path / "threads.sqlite", ctx, "t")
    graph.close()


def test_a_failed_turn_leaves_the_thread_as_it_was(session_factory, monkeypatch):
    def broken(*args, **kwargs):
        raise ChatError("the generator broke")

    monkeypatch.setattr("agents.chat.tools.generate", broken)
    with session_factory() as session:
        session.turn("/seed 5")
        before = session.conversation()
        with pytest.raises(ChatError, match="the generator broke"):
            session.turn("a castle on a hill")
        assert session.conversation() == before  # no prompt, turn 1
        assert before.turn == 1 and before.prompt is None and before.seed == 5
    traces = sorted(session.ctx.pipeline.settings.traces_dir.joinpath("chat").glob("*.jsonl"))
    end = [read_trace(p)[-1] for p in traces]
    failed = next(e for e in end if e.error)
    assert "the generator broke" in failed.error and failed.data["rolled_back"] is True


def test_a_turn_killed_midway_is_undone_when_the_thread_reopens(session_factory, monkeypatch):
    def killed(*args, **kwargs):
        raise SystemExit("killed")

    with session_factory() as session:
        session.turn("/seed 5")
        monkeypatch.setattr("agents.chat.tools.generate", killed)
        # no ChatSession.turn (it would roll back): the process "dies" inside the graph
        with pytest.raises(SystemExit):
            session.graph.invoke({"request": "a castle"}, session.config, context=session.ctx)
        assert session.conversation().prompt == "a castle"  # half a turn is stored
    with session_factory() as session:
        restored = session.conversation()
        assert (restored.turn, restored.prompt, restored.seed) == (1, None, 5)
        assert session.resumed
