"""A small graph of tiny experts with real weight files, and the chat CLI driven by stdin."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graph.records import BaseFamily, Expert, ExpertKind, ExpertStatus

# id, kind, description (what a crawl would have written), trigger words
EXPERTS = [
    ("ckpt-photo", "ckpt", "photorealistic portraits and scenes, natural light", []),
    ("lora-red-hair", "peft", "vivid red hair with detailed strands", ["redhair"]),
    ("lora-watercolor", "peft", "watercolor painting style with soft washes", ["wcstyle"]),
    ("lora-anime", "peft", "anime style illustration with cel shading", ["animestyle"]),
    ("lora-cinematic", "peft", "cinematic lighting with dramatic shadows, film look", []),
    ("lora-castle", "peft", "medieval castles on hills", []),
]
SECRET = "sk-chat-secret-0123456789abcdef"


@dataclass
class Turns:
    """The outcome of one ``diffgraph chat --json`` run."""

    exit_code: int
    reports: list[dict]
    stdout: str
    stderr: str

    def __getitem__(self, i: int) -> dict:
        return self.reports[i]


@pytest.fixture(scope="package")
def chat_template(tmp_path_factory, tiny_sd15, embedder):
    """A data folder holding the graph (store + Chroma) of EXPERTS; copied by each test."""
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tests.support.tiny_experts import tiny_experts

    root = tmp_path_factory.mktemp("chat-world")
    (root / "experts").mkdir()
    experts = [
        e.model_copy(update={"name": e.id.replace("-", " ").title()})
        for e in tiny_experts(tiny_sd15, root / "experts", EXPERTS)
    ]
    experts.append(
        Expert(
            id="lora-old",
            kind=ExpertKind.PEFT,
            base=BaseFamily.SD15,
            name="Old",
            description="an old version",
            status=ExpertStatus.DEPRECATED,
            superseded_by="lora-castle",
        )
    )
    experts.append(
        Expert(id="xl-lora", kind=ExpertKind.PEFT, base=BaseFamily.SDXL, name="XL", description="x")
    )
    data = root / "data"
    with UniversalGraph(GraphConfig(data_dir=data), embedder) as graph:
        graph.add_experts(experts)
        graph.index.ensure_fresh()
    return data


@pytest.fixture
def chat(tmp_path, monkeypatch, chat_template, tiny_sd15_files, embedder):
    """``chat(*args, input=...) -> Turns``: the real CLI in JSON mode on a private data copy."""
    from tools.cli import build_app

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    shutil.copytree(chat_template, data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(data))
    monkeypatch.setenv("DIFFGRAPH_BASE_MODEL", str(tiny_sd15_files.folder))
    monkeypatch.setenv("DIFFGRAPH_GENERATION__STEPS", "2")
    monkeypatch.setattr("graph.universal.Embedder", lambda *args, **kwargs: embedder)
    app = build_app()

    def run(*args: str, input: str | None = None, json_mode: bool = True) -> Turns:
        argv = ["chat", "--size", "64x64", "--out", str(tmp_path / "out"), *args]
        result = CliRunner().invoke(app, argv + (["--json"] if json_mode else []), input=input)
        reports = [json.loads(line) for line in result.stdout.splitlines()] if json_mode else []
        return Turns(result.exit_code, reports, result.stdout, result.stderr)

    return run


def trace_files(data: Path, agent: str) -> list[Path]:
    return sorted((data / "traces" / agent).glob("*.jsonl"))
