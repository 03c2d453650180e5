"""Each kind of store file damaged: a clear error (exit 2) or a recovery, never a traceback.

Store files: ``graph.sqlite``, the segments (reference-prompt features, expert features,
calibration edges), the records inside ``graph.sqlite`` and the Chroma index folder.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from graph.config import GraphConfig
from graph.store import GraphStore
from main import app
from tests.graph.damage import (
    SEGMENT_KINDS,
    damage_file,
    damage_graph_sqlite,
    damage_segment,
    execute,
    lose_graph_sqlite,
    seed,
)


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def stats():
    result = run("graph", "stats", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def said(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


def findings() -> list[dict]:
    """`graph check --json`: the findings of a graph expected to have some."""
    result = run("graph", "check", "--json")
    assert result.exit_code == 2, result.output
    return json.loads(result.stdout)["findings"]


def quarantined(data, pattern: str) -> list:
    return sorted((data / "quarantine").glob(f"*/{pattern}"))


# What is left after repairing each kind of segment: experts, refs, edges.
AFTER_REPAIR = {
    ("refs", "lost"): (3, 0, 0),
    ("experts", "lost"): (0, 3, 0),
    ("edges", "lost"): (3, 3, 0),
    ("refs", "nan"): (3, 2, 1),
    ("experts", "nan"): (2, 3, 1),
    ("edges", "nan"): (3, 3, 1),
}


@pytest.mark.parametrize("kind", SEGMENT_KINDS)
@pytest.mark.parametrize("how", ["truncated", "zeroed", "random", "wrong width", "NaN rows"])
def test_damaged_segment(data, kind, how):
    path = data / "graph" / "segments" / seed(data)[kind]
    damage_segment(path, how)

    for command in (("graph", "stats"), ("graph", "export", "out.zip")):
        refused = run(*command)
        assert refused.exit_code == 2, refused.output
        assert path.name in said(refused.stderr) and "graph check --repair" in said(refused.stderr)
    expected = AFTER_REPAIR[kind, "nan" if how == "NaN rows" else "lost"]
    lost = 6 - expected[0] - expected[1]  # nodes without an embedding once it is repaired
    found = findings()
    assert found[0]["what"] == str(path) and len(found) == 1 + lost

    repaired = run("graph", "check", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert [p.name for p in quarantined(data, "segments/*")] == [path.name]
    left = stats()
    assert (left["experts"], left["reference_prompts"], left["calibration_edges"]) == expected
    records = [json.loads(line) for p in quarantined(data, "records.jsonl") for line in p.open()]
    assert len(records) == lost
    assert run("graph", "check").exit_code == 0
    assert run("graph", "export", "out.zip").exit_code == 0
    assert run("graph", "import", "out.zip", "--replace").exit_code == 0


def test_registered_segment_missing(data):
    path = data / "graph" / "segments" / seed(data)["edges"]
    damage_segment(path, "missing")
    refused = run("graph", "stats")
    assert refused.exit_code == 2 and "registered but missing" in said(refused.stderr)
    assert run("graph", "check", "--repair").exit_code == 0
    assert stats()["calibration_edges"] == 0


@pytest.mark.parametrize("how", ["truncated", "zeroed", "random", "missing", "empty", "bad meta"])
def test_damaged_graph_sqlite_is_restored_from_the_newest_good_backup(data, how):
    seed(data)
    damage_graph_sqlite(data, how)
    db = data / "graph" / "graph.sqlite"

    refused = run("graph", "stats")  # never an empty graph with exit 0
    assert refused.exit_code == 2, refused.output
    assert db.exists() == (how != "missing")  # refusing, a reader makes no new graph.sqlite
    assert "graph check" in said(refused.stderr)
    (found,) = findings()
    assert found["what"] == str(db) and "restore" in found["action"]
    assert found["action"].startswith(f"restore {db.parent / 'backups' / 'graph-1.sqlite'}")

    assert run("graph", "check", "--repair").exit_code == 0
    restored = stats()  # the graph before the second session's write
    assert (restored["experts"], restored["reference_prompts"]) == (3, 3)
    assert restored["calibration_edges"] == 0
    assert quarantined(data, "segments/*")  # what the undone write left
    assert run("graph", "check").exit_code == 0


def test_lost_graph_sqlite_without_backup_is_quarantined_not_emptied(data):
    lose_graph_sqlite(data)
    refused = run("graph", "stats")
    assert refused.exit_code == 2 and "registers none of the 1 segment" in said(refused.stderr)
    assert "no good backup" in findings()[0]["action"]
    assert run("graph", "check", "--repair").exit_code == 0
    assert len(quarantined(data, "segments/*")) == 1
    assert stats()["experts"] == 0


def test_damaged_records_are_skipped_by_readers_and_removable(data):
    seed(data)
    execute(
        data,
        "UPDATE experts SET record = '{broken' WHERE id = 'b'",
        "UPDATE refs SET text = '' WHERE id = 'r2'",
    )

    shown = run("graph", "show", "b")
    assert shown.exit_code == 2 and "record 'b' is damaged" in said(shown.stderr)
    exported = run("graph", "export", "out.zip")
    assert exported.exit_code == 0, exported.output
    assert "skipped" in said(exported.stderr) and "'b'" in said(exported.stderr)
    assert "2 experts, 2 reference prompts, 1 edges" in " ".join(exported.stdout.split())
    assert run("graph", "import", "out.zip", "--replace").exit_code == 0
    assert stats()["experts"] == 2


def test_remove_of_a_damaged_record(data):
    seed(data)
    execute(data, "UPDATE experts SET record = 'null' WHERE id = 'b'")
    removed = run("graph", "remove", "b")
    assert removed.exit_code == 0, removed.output
    assert stats()["experts"] == 2


def test_check_repair_quarantines_damaged_records(data):
    seed(data)
    execute(
        data,
        "UPDATE experts SET record = '[]' WHERE id = 'c'",
        "UPDATE experts SET status = 'deprecated' WHERE id = 'a'",
    )
    problems = {f["what"]: f["problem"] for f in findings()}
    assert "damaged record" in problems["expert 'c'"]
    assert "disagree" in problems["expert 'a'"]
    assert run("graph", "check", "--repair").exit_code == 0
    (records,) = quarantined(data, "records.jsonl")
    assert json.loads(records.read_text())["id"] == "c"
    with GraphStore(data / "graph") as store:
        assert [e.id for e in store.experts()] == ["a", "b"]
        assert store.arrays().expert_status.tolist() == ["active", "active"]


def test_select_skips_a_damaged_record(tmp_path, monkeypatch, embedder):
    from tests.agents.selection.conftest import known_data_dir

    data = known_data_dir(tmp_path, monkeypatch, embedder)
    execute(data, "UPDATE experts SET record = '{' WHERE id = 'lora-red-hair'")
    result = run("select", "a portrait of a young woman with red hair, watercolor", "--json")
    assert result.exit_code == 0, result.output
    assert "record 'lora-red-hair' is damaged" in said(result.stderr)
    assert "lora-red-hair" not in [e["id"] for e in json.loads(result.stdout)["loras"]]


def test_damaged_chroma_index_is_rebuilt(data):
    from chromadb.api.client import SharedSystemClient

    from graph.universal import UniversalGraph

    seed(data)
    with UniversalGraph(GraphConfig(data_dir=data)) as graph:
        assert graph.index.revision == graph.store.revision  # built
    SharedSystemClient.clear_system_cache()  # as a new process would start
    damage_file(data / "chroma" / "chroma.sqlite3", "random")

    refused = run("graph", "remove", "a")
    assert refused.exit_code == 2
    assert "retrieval index" in said(refused.stderr)
    assert "graph check --repair" in said(refused.stderr)
    assert [f["what"] for f in findings()] == [str(data / "chroma")]
    assert run("graph", "check", "--repair").exit_code == 0
    assert (quarantined(data, "chroma/chroma.sqlite3")[0]).exists()
    assert run("graph", "remove", "a").exit_code == 0
    with UniversalGraph(GraphConfig(data_dir=data)) as graph:
        assert set(graph.index.entries()) == {"b", "c"}


def test_index_entries_that_disagree_are_rebuilt(data):
    from graph.universal import UniversalGraph

    seed(data)
    with UniversalGraph(GraphConfig(data_dir=data)) as graph:
        graph.index._collection(*graph.index.entries()["a"]).delete(ids=["a"])
    assert "1 experts missing" in findings()[0]["problem"]
    assert run("graph", "check", "--repair").exit_code == 0
    assert run("graph", "check").exit_code == 0


def test_a_sound_graph_passes(data):
    seed(data)
    result = run("graph", "check")
    assert result.exit_code == 0 and "the graph is sound" in result.stdout
    report = json.loads(run("graph", "check", "--json").stdout)
    assert report["findings"] == [] and report["backups"][0].endswith("graph-1.sqlite (revision 3)")
