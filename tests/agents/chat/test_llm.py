"""``diffgraph chat`` with the real langchain-openai client against the scripted server."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from tests.agents.chat.conftest import SECRET
from tests.agents.selection.test_llm import candidates_of
from tools.llm.scripted_server import RecordedRequest
from tools.tracing import read_trace

_QUOTED = {
    label: re.compile(rf"<<<DATA {label} \w+>>>\n(.*)\n<<<END {label} \w+>>>", re.S)
    for label in ("message", "prompt")
}


def quoted(request: RecordedRequest, label: str) -> str:
    """The data quoted in the request's first user message (retries append more)."""
    first = next(m["content"] for m in request.messages if m["role"] == "user")
    return _QUOTED[label].search(first)[1]


def schema_name(request: RecordedRequest) -> str:
    return request.body["response_format"]["json_schema"]["name"]


def scripted(decisions: dict[str, list]):
    """Chat decisions per user message (in order, for retries); the selection agent's
    analysis is the prompt's phrases and its filter keeps every candidate."""

    def reply(request: RecordedRequest):
        schema = schema_name(request)
        if schema == "TurnDecision":
            return decisions[quoted(request, "message")].pop(0)
        if schema == "PromptAnalysis":
            prompt = quoted(request, "prompt")
            attributes = [p.strip() for p in prompt.split(",") if p.strip()][:6]
            return {
                "summary": prompt,
                "components": [{"component": "image", "attributes": attributes}],
            }
        listing = candidates_of(request)
        return {
            "verdicts": [
                {"id": c["id"], "keep": True, "reason": "fits"}
                for c in listing["checkpoints"] + listing["loras"]
            ]
        }

    return reply


@pytest.fixture
def llm_env(monkeypatch, openai_server):
    # the OpenAI client logs through "httpx2" to stdout: keep its lines out of the JSON
    monkeypatch.setattr(logging.getLogger("httpx2"), "level", logging.WARNING)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "scripted-model")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("DIFFGRAPH_LLM__HTTP_RETRIES", "0")
    return openai_server


def test_llm_reads_each_message_and_the_key_never_reaches_a_trace(chat, llm_env, tmp_path):
    save_dir = tmp_path / "keep"
    messages = [
        "I'd like a castle on a hill at dusk",
        "make the lighting more cinematic",
        "please stop using the castle lora",
        f"save it to {save_dir} with the merged model",
        "drop dragons",
    ]
    castle = "a castle on a hill at dusk"
    llm_env.respond_with(
        scripted(
            {
                messages[0]: [{"action": "new_prompt", "prompt": castle}],
                messages[1]: [{"action": "refine", "prompt": f"{castle}, cinematic lighting"}],
                messages[2]: [  # an id that is not in the graph is retried with the error
                    {"action": "ban", "expert_ids": ["castle"]},
                    {"action": "ban", "expert_ids": ["lora-castle"], "reasoning": "no castle"},
                ],
                messages[3]: [{"action": "save", "path": str(save_dir), "merged": True}],
                messages[4]: ["not json at all", "```still not json```"],
            }
        )
    )
    turns = chat(input="\n".join([*messages, "/show", "bye"]) + "\n")
    assert turns.exit_code == 0, turns.stderr
    assert [r["interpreter"] for r in turns.reports] == ["llm"] * 4 + ["fallback"] + ["command"] * 2
    assert {r["chat_mode"] for r in turns.reports} == {"llm"}
    new, refine, ban, save, fallback, show, bye = turns.reports

    assert new["conversation"]["prompt"] == castle
    assert refine["conversation"]["prompt"] == f"{castle}, cinematic lighting"
    recipe = refine["conversation"]["last"]["recipe"]
    assert recipe["selection_mode"] == "llm" and recipe["demo"]
    assert "lora-castle" in [e["expert_id"] for e in recipe["loras"]]
    assert ban["changes"] == ["banned lora-castle"] and ban["decision"]["reasoning"] == "no castle"
    assert "lora-castle" not in [
        e["expert_id"] for e in ban["conversation"]["last"]["recipe"]["loras"]
    ]
    assert Path(save["saved"]["merged_model"]).is_file()
    assert Path(save["saved"]["folder"]) == save_dir
    # the rules took over: "drop dragons" removes nothing, so nothing is drawn
    assert fallback["decision"]["action"] == "refine" and not fallback["generated"]
    assert fallback["notes"] == ["the prompt is unchanged"]
    assert show["conversation"]["banned"] == ["lora-castle"] and bye["done"]

    decisions = [r for r in llm_env.chat_requests if schema_name(r) == "TurnDecision"]
    assert len(decisions) == 1 + 1 + 2 + 1 + 2  # commands never reach the LLM
    retry = decisions[3]
    assert "no expert 'castle' in the graph" in retry.messages[-1]["content"]
    assert quoted(decisions[0], "message") == messages[0]  # the user's text is quoted data
    assert "untrusted data" in decisions[0].messages[0]["content"]
    auth = {v for r in decisions for k, v in r.headers.items() if k.lower() == "authorization"}
    assert auth == {f"Bearer {SECRET}"}  # the key was used, and is in no trace below

    traces = sorted((tmp_path / "data" / "traces").rglob("*.jsonl"))
    assert {p.parent.name for p in traces} == {"chat", "selection", "generate"}
    for path in traces:
        read_trace(path)  # every line is a TraceEvent
        assert SECRET not in path.read_text()
    modes = [read_trace(Path(r["trace_path"]))[-1].mode for r in turns.reports]
    assert modes == ["llm"] * 4 + ["fallback", None, None]
    fallback_events = read_trace(Path(fallback["trace_path"]))
    assert [e.event for e in fallback_events].count("llm_call") == 2
    assert any(e.event == "fallback" and e.node == "interpret" for e in fallback_events)


def test_no_llm_flag_overrides_a_configured_llm(chat, llm_env):
    turns = chat("--no-llm", input="/loras 1\n")
    assert turns.exit_code == 0, turns.stderr
    assert turns[0]["chat_mode"] == "no-llm" and llm_env.chat_requests == []
