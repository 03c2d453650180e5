"""A cold ``diffgraph select --no-llm`` (issue 15): the machine runs without LangGraph,
torch or Chroma's client, and its reducers are the ones the state declares."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from pathlib import Path

from agents.selection.graph import _reducers
from agents.selection.state import merge_dicts
from tests.agents.selection.conftest import known_data_dir

ROOT = Path(__file__).resolve().parents[3]
PROMPT = "a portrait of a young woman with red hair, watercolor"


def test_reducers_are_read_from_the_state():
    assert _reducers() == {
        "dropped": (operator.add, list),
        "unknown_ids": (operator.add, list),
        "warnings": (operator.add, list),
        "step_modes": (merge_dicts, dict),
        "llm_requests": (operator.add, int),
    }


def test_cold_select_imports_no_heavy_library(tmp_path, monkeypatch, embedder):
    known_data_dir(tmp_path, monkeypatch, embedder)
    embedder.embed(["make sure the ONNX export exists"])
    code = (
        "import json, sys\n"
        f"sys.argv = ['diffgraph', 'select', '--no-llm', '--json', {PROMPT!r}]\n"
        "from main import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('MODULES ' + json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stderr.splitlines() if x.startswith("MODULES "))
    loaded = {m.split(".")[0] for m in json.loads(line.removeprefix("MODULES "))}
    assert not loaded & {"langgraph", "langchain_core", "torch", "chromadb", "transformers"}
    data = json.loads(out.stdout)
    assert data["mode"] == "no-llm" and data["checkpoints"][0]["id"] == "ckpt-watercolor"
    assert "lora-red-hair" in [e["id"] for e in data["loras"]]
