"""``diffgraph select`` end to end (no-LLM, and LLM through the OPENAI_* environment)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.agents.selection.conftest import known_data_dir
from tests.agents.selection.test_llm import scripted

PROMPT = "a portrait of a young woman with red hair, watercolor"


@pytest.fixture
def cli(tmp_path, monkeypatch, embedder):
    from tools.cli import build_app

    known_data_dir(tmp_path, monkeypatch, embedder)
    app = build_app()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_select_json_no_llm(cli, tmp_path):
    result = cli("select", PROMPT, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "no-llm" and data["checkpoints"][0]["id"] == "ckpt-watercolor"
    assert "lora-red-hair" in [e["id"] for e in data["loras"]]
    traces = list((tmp_path / "data" / "traces" / "selection").glob("*.jsonl"))
    assert [str(p) for p in traces] == [data["trace_path"]]


def test_select_table_shows_reasons_and_drops(cli):
    result = cli("select", PROMPT)
    assert result.exit_code == 0, result.output
    assert "selected for sd15 · mode: no-LLM policy" in result.output
    assert "dropped candidates" in result.output and "lora-red-flamingo" in result.output


def test_select_refuses_empty_prompt_and_unknown_family(cli):
    empty = cli("select", "   ")
    assert empty.exit_code == 2 and "the prompt is empty" in empty.output
    flux = cli("select", "a cat", "--base", "flux1")
    assert flux.exit_code == 2 and "no active experts of the flux1 family" in flux.output


def test_select_with_llm_from_environment(cli, monkeypatch, openai_server):
    # tools/cli.py quiets "httpx" but the OpenAI client logs through "httpx2", and its log
    # handler writes to stdout: keep the request lines out of the JSON here
    monkeypatch.setattr(logging.getLogger("httpx2"), "level", logging.WARNING)
    openai_server.respond_with(scripted())
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "scripted-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-secret-0123456789abcdef")
    monkeypatch.setenv("DIFFGRAPH_LLM__HTTP_RETRIES", "0")
    result = cli("select", PROMPT, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "llm" and data["llm_requests"] == 2
    assert {e["id"] for e in data["checkpoints"] + data["loras"]} == {
        "ckpt-watercolor",
        "lora-red-hair",
        "lora-eyes",
    }
    trace = Path(data["trace_path"]).read_text()
    assert "sk-cli-secret" not in trace and '"event": "llm_call"' in trace

    forced = cli("select", PROMPT, "--json", "--no-llm")
    assert json.loads(forced.stdout)["mode"] == "no-llm"
    assert len(openai_server.chat_requests) == 2  # none from the --no-llm run


def test_a_lora_tag_weight_out_of_range_is_refused(cli):
    result = cli("select", "a woman with red hair <lora:lora-red-hair:999>")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "<lora:lora-red-hair:999>: weight 999 is out of range" in result.stderr
    assert "from -5 to 5" in result.stderr
    assert cli("select", "a woman with red hair <lora:lora-red-hair:0.8>").exit_code == 0
