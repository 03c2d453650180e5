"""`diffgraph graph ...` end to end through the Typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from main import app


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def test_add_search_stats_deprecate_remove(run, tmp_path):
    records = [
        {
            "id": "red",
            "kind": "peft",
            "base": "sd15",
            "name": "Red hair",
            "description": "vivid red hair for portraits",
        },
        {
            "id": "wc",
            "kind": "peft",
            "base": "sd15",
            "name": "Watercolor",
            "description": "watercolor painting style",
        },
    ]
    (tmp_path / "experts.json").write_text(json.dumps(records))
    assert run("graph", "add-expert", str(tmp_path / "experts.json")).exit_code == 0
    result = run(
        "graph",
        "add-expert",
        "--id",
        "real",
        "--kind",
        "ckpt",
        "--base",
        "sd15",
        "--description",
        "photorealistic checkpoint",
        "--json",
    )
    assert json.loads(result.stdout) == {"added": ["real"]}

    hits = json.loads(
        run(
            "graph", "search", "a woman with red hair", "--kind", "peft", "--k", "1", "--json"
        ).stdout
    )
    assert [h["id"] for h in hits] == ["red"] and 0 < hits[0]["similarity"] <= 1

    stats = json.loads(run("graph", "stats", "--json").stdout)
    assert stats["experts"] == 3 and stats["embedding_dim"] == 384

    assert run("graph", "deprecate", "red").exit_code == 0
    hits = json.loads(run("graph", "search", "red hair", "--kind", "peft", "--json").stdout)
    assert "red" not in [h["id"] for h in hits]
    assert run("graph", "remove", "wc").exit_code == 0
    assert json.loads(run("graph", "stats", "--json").stdout)["experts"] == 2


def test_ref_prompts_export_import(run, tmp_path):
    (tmp_path / "prompts.jsonl").write_text(
        '{"prompt": "a castle on a hill"}\n{"prompt": "a cat in a hat"}\n'
    )
    run("graph", "add-expert", "--id", "a", "--kind", "peft", "--base", "sd15")
    assert (
        "added 2 reference prompt(s)"
        in run("graph", "add-ref-prompts", str(tmp_path / "prompts.jsonl")).stdout
    )
    assert run("graph", "export", str(tmp_path / "g.zip")).exit_code == 0
    refused = run("graph", "import", str(tmp_path / "g.zip"))
    assert refused.exit_code == 2 and "--replace" in refused.stderr
    assert run("graph", "import", str(tmp_path / "g.zip"), "--replace").exit_code == 0
    stats = json.loads(run("graph", "stats", "--json").stdout)
    assert stats["experts"] == 1 and stats["reference_prompts"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("graph", "add-expert", "--id", "x", "--kind", "ckpt"), "missing --base"),
        (("graph", "deprecate", "nope"), "no expert with id 'nope'"),
        (("graph", "add-expert", "missing.json"), "does not exist"),
        (("graph", "import", "missing.zip", "--replace"), "does not exist"),
    ],
)
def test_errors_are_one_clear_line(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_invalid_record_names_the_field(run, tmp_path):
    (tmp_path / "bad.json").write_text(
        json.dumps({"id": "x", "kind": "ckpt", "base": "sd3", "name": "x"})
    )
    result = run("graph", "add-expert", str(tmp_path / "bad.json"))
    assert result.exit_code == 2
    assert "base" in result.stderr and "'sd3'" in result.stderr
