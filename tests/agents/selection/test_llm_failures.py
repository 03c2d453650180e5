"""A real (weak) LLM's failures: every step of the selection falls back, traced, no crash."""

from __future__ import annotations

import pytest

from agents.selection import select
from tests.agents.selection.test_llm import PROMPT
from tools.llm.scripted_server import Reply
from tools.tracing import read_trace

FAILURES = {
    "length": lambda request: Reply(content='{"summary": "a portr', finish_reason="length"),
    "refusal": lambda request: Reply(refusal="I cannot help with that."),
    "content_filter": lambda request: Reply(content="{", finish_reason="content_filter"),
    "5xx": lambda request: Reply(status=502, error="bad gateway"),
    "bad_json": lambda request: "Sure! Here is the JSON: {summary: oops",
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_each_failure_falls_back_per_step(known_graph, make_context, openai_server, kind):
    openai_server.respond_with(FAILURES[kind])
    result = select(PROMPT, make_context(known_graph, openai_server))
    assert result.mode == "fallback"
    assert result.step_modes == {"analyse": "fallback", "filter": "fallback"}
    assert "ckpt-watercolor" in result.expert_ids  # the no-LLM policy did the work
    events = read_trace(result.trace_path)
    assert {e.node for e in events if e.event == "fallback"} == {"analyse", "filter"}
    assert all(e.llm.error for e in events if e.event == "llm_call")


def test_a_server_without_json_schema_is_used_in_json_mode(
    known_graph, make_context, openai_server
):
    from tests.agents.selection.test_llm import KEEP, scripted

    openai_server.reject_json_schema = True
    openai_server.respond_with(scripted())
    result = select(PROMPT, make_context(known_graph, openai_server))
    assert result.mode == "llm" and set(result.expert_ids) == set(KEEP)
    kinds = [r.body["response_format"]["type"] for r in openai_server.chat_requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
