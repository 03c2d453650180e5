"""TraceWriter: the file layout, the event schema, elision and secret scrubbing."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import SecretStr

from tools.settings import LLMSettings, Settings
from tools.tracing import (
    TraceError,
    TraceEvent,
    TraceWriter,
    known_secrets,
    read_trace,
)


def test_events_are_written_in_order_and_validate(tmp_path):
    tracer = TraceWriter(tmp_path, "selection", run_id="run-1")
    tracer.run_start({"prompt": "a cat"}, demo=True)
    with tracer.span("summarise", inputs={"prompt": "a cat"}) as span:
        span["outputs"] = {"summary": "cat"}
        span["mode"] = "no-llm"
    tracer.tool_call("retrieve", "search", {"q": "cat"}, [{"id": "e1"}], latency_ms=1.5)
    tracer.fallback("filter", "bad json", attempts=2)
    tracer.run_end({"ok": True}, mode="no-llm")
    assert tracer.path == tmp_path / "selection" / "run-1.jsonl"
    events = read_trace(tracer.path)
    assert [e.event for e in events] == ["run_start", "node", "tool_call", "fallback", "run_end"]
    assert [e.seq for e in events] == [0, 1, 2, 3, 4]
    assert {e.run_id for e in events} == {"run-1"} and {e.agent for e in events} == {"selection"}
    node = events[1]
    assert node.node == "summarise" and node.mode == "no-llm" and node.latency_ms >= 0
    assert node.outputs == {"summary": "cat"} and events[0].data == {"demo": True}
    assert events[2].data == {"tool": "search"} and events[3].error == "bad json"


def test_span_records_an_exception_then_reraises(tmp_path):
    tracer = TraceWriter(tmp_path, "a")
    with pytest.raises(RuntimeError), tracer.span("boom"):
        raise RuntimeError("kaput")
    tracer.close()
    (event,) = read_trace(tracer.path)
    assert event.event == "error" and event.error == "RuntimeError: kaput" and event.node == "boom"


def test_embeddings_are_elided_short_lists_kept(tmp_path):
    tracer = TraceWriter(tmp_path, "a")
    tracer.node(
        "embed",
        outputs={
            "vector": np.ones(384, np.float32),
            "list": [0.5] * 33,
            "small": [0.25, 0.5],
            "ints": list(range(40)),
        },
    )
    tracer.close()
    out = read_trace(tracer.path)[0].outputs
    assert out["vector"] == "<384 floats elided>" and out["list"] == "<33 floats elided>"
    assert out["small"] == [0.25, 0.5] and out["ints"] == list(range(40))


def test_secrets_are_scrubbed_everywhere(tmp_path):
    settings = Settings(
        llm=LLMSettings(api_key=SecretStr("local-key-42")),
        civitai_api_key=SecretStr("civ-secret-777"),
    )
    assert sorted(known_secrets(settings)) == ["civ-secret-777", "local-key-42"]
    tracer = TraceWriter.from_settings(settings.model_copy(update={"data_dir": tmp_path}), "a")
    tracer.node(
        "n",
        inputs={
            "text": "key local-key-42 and civ-secret-777 here",
            "openai": "sk-proj-ABCDEFGHIJKLMNOPQRSTUV",
            "hf": "hf_abcdefghijklmnopqrstuvwx",
            "header": "Authorization: Bearer abcdefghijklmnop",
            "api_key": "anything",
            "hf_token": "whatever",
            "prompt_tokens": 12,
            "secret_obj": SecretStr("zzz"),
        },
        error="failed with Bearer qwertyuiopasdfgh",
    )
    tracer.close()
    text = tracer.path.read_text()
    for leaked in (
        "local-key-42",
        "civ-secret-777",
        "ABCDEFGHIJ",
        "hf_abcdef",
        "abcdefghijklmnop",
        "anything",
        "whatever",
        "zzz",
        "qwertyuiop",
    ):
        assert leaked not in text, leaked
    inputs = read_trace(tracer.path)[0].inputs
    assert inputs["prompt_tokens"] == 12 and inputs["api_key"] == "***"
    assert inputs["text"] == "key *** and *** here"


def test_unsafe_names_and_bad_lines_are_refused(tmp_path):
    with pytest.raises(TraceError, match="safe file name"):
        TraceWriter(tmp_path, "../escape")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"run_id": "r"}\n')
    with pytest.raises(TraceError, match=r"bad.jsonl:1 is not a trace event"):
        read_trace(bad)
    with pytest.raises(TraceError, match="does not exist"):
        read_trace(tmp_path / "missing.jsonl")


def test_run_ids_are_unique_and_schema_is_exported():
    assert TraceWriter("/tmp", "a").run_id != TraceWriter("/tmp", "a").run_id
    assert "llm" in TraceEvent.model_json_schema()["properties"]
