"""``diffgraph chat`` with an LLM whose every reply is cut off at the length limit."""

from __future__ import annotations

from pathlib import Path

from tests.agents.chat.test_llm import llm_env  # noqa: F401 - fixture
from tools.llm.scripted_server import Reply
from tools.tracing import read_trace


def test_cut_off_replies_fall_back_to_the_rules(chat, llm_env):  # noqa: F811
    llm_env.respond_with(lambda request: Reply(content='{"action": "ne', finish_reason="length"))
    turns = chat(input="a castle on a hill at dusk\nbye\n")
    assert turns.exit_code == 0, turns.stderr
    first = turns[0]
    assert first["interpreter"] == "fallback" and first["generated"]
    assert first["conversation"]["prompt"] == "a castle on a hill at dusk"
    events = read_trace(Path(first["trace_path"]))
    fallback = [e for e in events if e.event == "fallback" and e.node == "interpret"]
    assert fallback and "cut off" in fallback[0].error
