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


def _one_clear_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip()
    assert line.startswith("error:") and len(line) < 600, line
    return line


BASE_RECORD = {"id": "x", "kind": "peft", "base": "sd15", "name": "x"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("recommended_weight", float("nan"), "finite number"),
        ("recommended_weight", 1e308, "less than or equal to 5"),
        ("trigger_words", ["w" * 100_000], "at most 100 characters"),
        ("tags", ["t"] * 50_000, "at most 128 items"),
        ("id", "a/../b", "'..' path part"),
    ],
)
def test_add_expert_refuses_values_out_of_bounds(run, tmp_path, field, value, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**BASE_RECORD, field: value}))
    line = _one_clear_line(run("graph", "add-expert", str(path)))
    assert field in line and message in line
    assert json.loads(run("graph", "stats", "--json").stdout)["experts"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": "caf\xe9", "kind": "peft"}', "is not UTF-8 text (byte 0xe9 on line 1)"),
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
        (b"{not json", "is not valid JSON"),
    ],
)
def test_unreadable_record_files_are_one_line(run, tmp_path, content, message):
    (tmp_path / "bad.json").write_bytes(content)
    assert message in _one_clear_line(run("graph", "add-expert", str(tmp_path / "bad.json")))


def test_a_byte_order_mark_is_dropped(run, tmp_path):
    (tmp_path / "x.json").write_text(json.dumps(BASE_RECORD), encoding="utf-8-sig")
    assert run("graph", "add-expert", str(tmp_path / "x.json")).exit_code == 0
    (tmp_path / "p.txt").write_bytes("\ufeffa red cat\n\ufeffa blue dog\n".encode())
    assert run("graph", "add-ref-prompts", str(tmp_path / "p.txt")).exit_code == 0
    from graph.store import GraphStore

    with GraphStore(tmp_path / "data" / "graph") as store:
        assert sorted(r.text for r in store.reference_prompts()) == ["a blue dog", "a red cat"]


def test_an_argument_that_is_not_utf8_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    argv = [b"graph", b"add-expert", b"--id", b"caf\xe9", b"--kind", b"peft", b"--base", b"sd15"]
    done = subprocess.run(
        [sys.executable.encode(), b"main.py", *argv],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "DIFFGRAPH_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    assert "b'caf\\xe9' is not valid UTF-8" in stderr


def test_a_data_dir_that_cannot_be_written_is_one_line(run, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "file" / "sub"))
    add = run("graph", "add-expert", "--id", "a", "--kind", "peft", "--base", "sd15")
    assert "Not a directory" in _one_clear_line(add)
    assert "Not a directory" in _one_clear_line(run("graph", "stats"))


def test_a_full_disk_during_a_graph_write_changes_nothing(run, tmp_path, monkeypatch):
    import errno

    import numpy as np

    add = ("graph", "add-expert", "--kind", "peft", "--base", "sd15", "--id")
    assert run(*add, "a").exit_code == 0

    def full(handle, **arrays):
        handle.write(b"PK\x03\x04 half a segment")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    line = _one_clear_line(run(*add, "b"))
    assert "No space left on device" in line and "nothing was changed" in line
    monkeypatch.undo()
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    stats = json.loads(run("graph", "stats", "--json").stdout)
    assert stats["experts"] == 1
    segments = tmp_path / "data" / "graph" / "segments"
    assert not [p.name for p in segments.iterdir() if p.name.startswith("tmp")]


def test_export_to_a_folder_or_under_a_file_is_refused(run, tmp_path):
    (tmp_path / "folder").mkdir()
    assert "is a folder" in _one_clear_line(run("graph", "export", str(tmp_path / "folder")))
    (tmp_path / "file").write_text("")
    under = _one_clear_line(run("graph", "export", str(tmp_path / "file" / "g.zip")))
    assert "is a file, not a folder" in under
