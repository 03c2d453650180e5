"""A crawl with an LLM that fails in every way a real one does: no crash, traced fallbacks."""

from __future__ import annotations

from agents.construction.schemas import CrawlRequest
from tests.agents.construction.conftest import make_settings, run, trace_events
from tools.llm.scripted_server import Reply

REPLIES = [
    Reply(content='{"description": "a wat', finish_reason="length"),
    Reply(refusal="I can't describe this model."),
    Reply(status=503, error="loading model"),
    Reply(content="{", finish_reason="content_filter"),
]


def test_every_llm_failure_falls_back_per_expert(platform, openai_server, tmp_path, embedder):
    # each request gets the next failure (a cut-off reply is retried once, as it should be)
    openai_server.respond_with(lambda request: REPLIES[(len(openai_server.requests) - 1) % 4])
    settings = make_settings(tmp_path / "data", llm=openai_server, browser="off")
    request = CrawlRequest(source="demo", platform_url=platform.url, max_experts=5, calibrate=False)
    report = run(settings, request, embedder)
    assert report.registered and report.llm_summaries == 0
    assert report.no_llm_summaries == len(report.registered)
    fallbacks = [e for e in trace_events(settings) if e["event"] == "fallback"]
    assert len(fallbacks) >= 4 and {e["node"] for e in fallbacks} == {"summarise"}
    events = trace_events(settings)
    calls = [e["llm"]["error"] for e in events if e["event"] == "llm_call"]
    reasons = " | ".join(calls)
    assert "cut off" in reasons and "refused" in reasons and "HTTP 503" in reasons
    assert "content filter" in reasons
