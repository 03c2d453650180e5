"""Every way a real (weak) LLM server fails falls back per call and shows in the trace."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import BaseModel

from tools.llm import make_chat_model, structured_call
from tools.llm.scripted_server import Reply
from tools.tracing import TraceWriter, read_trace


class Decision(BaseModel):
    summary: str
    parts: list[str]


GOOD = {"summary": "a cat", "parts": ["cat"]}
CUT = '{"summary": "a very long summary that never'


def _fallback() -> Decision:
    return Decision(summary="deterministic", parts=[])


def _call(server, tmp_path, method="json_schema", max_retries=1, **settings):
    tracer = TraceWriter(tmp_path / "traces", "test")
    result = structured_call(
        make_chat_model(server.llm_settings(**settings)),
        Decision,
        [("user", "a cat")],
        fallback=_fallback,
        tracer=tracer,
        node="decide",
        method=method,
        max_retries=max_retries,
    )
    tracer.close()
    return result, read_trace(tracer.path)


def _fallbacks(events):
    return [e for e in events if e.event == "fallback"]


@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
def test_length_cut_reply_is_retried_then_accepted(openai_server, tmp_path, method):
    if method == "function_calling":
        cut = Reply(tool_calls=[{"name": "Decision", "arguments": CUT}], finish_reason="length")
    else:
        cut = Reply(content=CUT, finish_reason="length")
    openai_server.push(cut, GOOD)
    result, events = _call(openai_server, tmp_path, method)
    assert result.mode == "llm" and result.attempts == 2 and result.value.summary == "a cat"
    first = next(e for e in events if e.event == "llm_call")
    assert "cut off at the length limit of 1024 tokens" in first.llm.error
    retry = openai_server.chat_requests[1].body["messages"]
    assert "cut off" in retry[-1]["content"]


def test_length_cut_twice_falls_back_and_is_traced(openai_server, tmp_path):
    openai_server.push(Reply(content=CUT, finish_reason="length"))
    openai_server.push(Reply(content=CUT, finish_reason="length"))
    result, events = _call(openai_server, tmp_path)
    assert result.mode == "fallback" and result.value.summary == "deterministic"
    assert "cut off" in result.error
    assert len(_fallbacks(events)) == 1 and "cut off" in _fallbacks(events)[0].error


def test_refusal_falls_back_at_once(openai_server, tmp_path):
    openai_server.push(Reply(refusal="I can't help with that."), GOOD)
    result, events = _call(openai_server, tmp_path, max_retries=3)
    assert result.mode == "fallback" and result.attempts == 1
    assert "refused" in result.error and "can't help" in result.error
    assert openai_server.remaining == 1  # not asked again
    assert "refused" in _fallbacks(events)[0].error


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_content_filter_falls_back_at_once(openai_server, tmp_path, method):
    openai_server.push(Reply(content='{"summ', finish_reason="content_filter"), GOOD)
    result, events = _call(openai_server, tmp_path, method, max_retries=3)
    assert result.mode == "fallback" and result.attempts == 1
    assert "content filter" in result.error and _fallbacks(events)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_fall_back(openai_server, tmp_path, status):
    openai_server.push(Reply(status=status, error="overloaded"), GOOD)
    result, events = _call(openai_server, tmp_path)
    assert result.mode == "fallback" and f"HTTP {status}" in result.error
    assert _fallbacks(events)


def test_timeout_falls_back(openai_server, tmp_path):
    openai_server.push(Reply(content=json.dumps(GOOD), delay_s=1.5))
    result, events = _call(openai_server, tmp_path, timeout_s=0.3)
    assert result.mode == "fallback" and "timed out" in result.error
    assert _fallbacks(events)


def test_anything_the_client_raises_falls_back(openai_server, tmp_path, monkeypatch):
    from langchain_openai import ChatOpenAI

    def broken(self, *args, **kwargs):
        raise KeyError("choices")  # e.g. a server's malformed 200 reply

    monkeypatch.setattr(ChatOpenAI, "_generate", broken)
    result, events = _call(openai_server, tmp_path)
    assert result.mode == "fallback" and "KeyError" in result.error and _fallbacks(events)


def test_rejected_json_schema_switches_to_json_mode_once(openai_server, tmp_path, caplog):
    openai_server.reject_json_schema = True
    openai_server.push(GOOD, GOOD)
    with caplog.at_level(logging.WARNING, logger="tools.llm.structured"):
        first, events = _call(openai_server, tmp_path)
        second, _ = _call(openai_server, tmp_path)
    assert (first.mode, second.mode) == ("llm", "llm")
    assert first.attempts == 1  # the server's limitation does not use up a retry
    formats = [r.body["response_format"]["type"] for r in openai_server.chat_requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    warnings = [r for r in caplog.records if "json_mode" in r.getMessage()]
    assert len(warnings) == 1  # said once
    switch = [e for e in events if e.event == "node" and e.data]
    assert switch[0].data["structured_method"] == "json_mode"
    assert not _fallbacks(events)


def test_reply_length_is_capped(openai_server, tmp_path):
    openai_server.push(GOOD)
    _call(openai_server, tmp_path, max_tokens=200)
    body = openai_server.chat_requests[0].body
    assert body["max_completion_tokens"] == 200 and body["max_tokens"] == 200


def test_openai_itself_gets_only_the_current_parameter():
    from tools.settings import LLMSettings

    model = make_chat_model(
        LLMSettings(base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key="sk-x")
    )
    assert model.max_tokens == 1024 and not model.extra_body
