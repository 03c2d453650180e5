"""Reply shapes of llama-cpp-python's OpenAI-compatible server (bench/llamacpp_check.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.selection.schemas import FilterDecision, PromptAnalysis
from tools.llm import make_chat_model, structured_call
from tools.llm.scripted_server import RecordedRequest, Reply
from tools.llm.structured import GRAMMAR_MAX_LENGTH, wire_schema
from tools.tracing import TraceWriter, read_trace

# what llama-cpp-python 0.3.36 answers to ``response_format: {"type": "json_schema"}``
LLAMA_CPP_PYTHON_500 = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"llama_cpp/server/app.py\", "
    "line 376, in create_chat_completion\n    POST /v1/chat/completions"
)


class Decision(BaseModel):
    summary: str = Field(max_length=2000)


def _fallback() -> Decision:
    return Decision(summary="deterministic")


def _call(server, tmp_path):
    tracer = TraceWriter(tmp_path / "traces", "test")
    result = structured_call(
        make_chat_model(server.llm_settings()),
        Decision,
        [("user", "a cat")],
        fallback=_fallback,
        tracer=tracer,
        node="decide",
    )
    tracer.close()
    return result, read_trace(tracer.path)


def test_llama_cpp_python_500_on_json_schema_switches_to_json_mode(openai_server, tmp_path):
    def reply(request: RecordedRequest):
        if (request.body.get("response_format") or {}).get("type") == "json_schema":
            return Reply(status=500, error=LLAMA_CPP_PYTHON_500)
        return {"summary": "a cat"}

    openai_server.respond_with(reply)
    result, events = _call(openai_server, tmp_path)
    assert result.mode == "llm" and result.value.summary == "a cat"
    last = openai_server.chat_requests[-1].body["response_format"]
    assert last["type"] == "json_object"
    assert any((e.data or {}).get("structured_method") == "json_mode" for e in events)


def test_wire_schemas_compile_to_llama_cpp_grammars():
    """llama.cpp refuses a grammar rule repeated over 2000 times: long maxLength bounds
    are not sent; short ones are."""
    for schema in (PromptAnalysis, FilterDecision):
        bounds = list(_max_lengths(wire_schema(schema)))
        assert bounds and max(bounds) <= GRAMMAR_MAX_LENGTH


def _max_lengths(node):
    if isinstance(node, dict):
        if "maxLength" in node:
            yield node["maxLength"]
        for value in node.values():
            yield from _max_lengths(value)
    elif isinstance(node, list):
        for value in node:
            yield from _max_lengths(value)


def test_a_long_reply_is_still_validated_client_side(openai_server, tmp_path):
    assert not list(_max_lengths(wire_schema(Decision)))
    openai_server.push({"summary": "x" * 2001}, {"summary": "y" * 2001})
    result, events = _call(openai_server, tmp_path)
    assert result.mode == "fallback" and "at most 2000 characters" in result.error
    assert [e for e in events if e.event == "fallback"]
