"""A weak local model's schema-valid but empty answers fall back like malformed ones."""

from __future__ import annotations

from agents.selection import select
from tests.agents.selection.test_llm import PROMPT, RED_HAIR, schema_of
from tools.llm.scripted_server import RecordedRequest
from tools.tracing import read_trace


def _reply(verdicts):
    def reply(request: RecordedRequest):
        if schema_of(request) == "PromptAnalysis":
            return RED_HAIR
        return {"reasoning": "", "verdicts": verdicts}

    return reply


def _check_falls_back(known_graph, make_context, openai_server, verdicts):
    openai_server.respond_with(_reply(verdicts))
    result = select(PROMPT, make_context(known_graph, openai_server))
    assert result.step_modes == {"analyse": "llm", "filter": "fallback"}
    assert result.mode == "fallback" and result.expert_ids  # the no-LLM policy chose
    assert len(openai_server.chat_requests) == 3  # the filter was asked again once
    retry = openai_server.chat_requests[-1].messages[-1]["content"]
    assert "no verdict names a candidate" in retry
    events = read_trace(result.trace_path)
    (fallback,) = [e for e in events if e.event == "fallback"]
    assert fallback.node == "filter" and "no verdict names a candidate" in fallback.error


def test_verdicts_naming_no_candidate_fall_back(known_graph, make_context, openai_server):
    invented = [{"id": "ң untrusted", "keep": True, "reason": "~ else"}]
    _check_falls_back(known_graph, make_context, openai_server, invented)


def test_empty_verdicts_fall_back(known_graph, make_context, openai_server):
    _check_falls_back(known_graph, make_context, openai_server, [])
