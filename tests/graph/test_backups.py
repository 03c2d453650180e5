"""Rolling backups of graph.sqlite: taken before writes, pruned, restorable, undo a write."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from graph import backups
from graph.check import backup_problem
from graph.store import GraphStore
from main import app
from tests.graph.helpers import expert, vec


def _session(root, *ids: str, compact: bool = False) -> int:
    """One store session adding experts; returns the revision before it wrote."""
    with GraphStore(root) as store:
        before = store.revision
        for i in ids:
            store.add_expert(expert(i), vec(len(store) + 1))
        if compact:
            store.compact()
        return before


def _revision(path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def test_each_session_backs_up_before_its_first_write(tmp_path):
    root = tmp_path / "g"
    _session(root, "a", "b")
    assert backups.backups(root) == []  # an empty graph has nothing to undo
    before = _session(root, "c", "d")  # two writes, one backup
    (backup,) = backups.backups(root)
    assert backup.name == "graph-1.sqlite" and _revision(backup) == before


def test_a_long_session_backs_up_again_after_the_interval(tmp_path, monkeypatch):
    root = tmp_path / "g"
    _session(root, "a")
    monkeypatch.setattr(backups, "BACKUP_INTERVAL_S", 0.0)
    _session(root, "b", "c")
    assert [p.name for p in backups.backups(root)] == ["graph-1.sqlite", "graph-2.sqlite"]


def test_the_newest_backups_are_kept_whole_and_nothing_else(tmp_path):
    root = tmp_path / "g"
    _session(root, "a")
    for n in range(8):  # compaction retires segments that backups still register
        _session(root, f"e{n}", compact=True)
    kept = backups.backups(root)
    assert [p.name for p in kept] == [f"graph-{n}.sqlite" for n in range(4, 9)]
    for path in kept:
        assert backup_problem(path, root / "segments") is None
    with GraphStore(root) as store:
        live = {n for n, _ in store._registered_segments()}
    on_disk = {p.name for p in (root / "segments").glob("*.npz")}
    assert on_disk == live | backups.backed_up_segments(root)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    return lambda *args: CliRunner().invoke(app, list(args))


def test_a_bad_write_is_undone_by_restoring_its_backup(run, tmp_path):
    root = tmp_path / "data" / "graph"
    _session(root, "a", "b")
    with GraphStore(root) as store:
        store.remove("b")  # the write to undo
    assert json.loads(run("graph", "stats", "--json").stdout)["experts"] == 1
    restored = run("graph", "check", "--restore", "1")
    assert restored.exit_code == 0, restored.output
    with GraphStore(root) as store:
        assert [e.id for e in store.experts()] == ["a", "b"]
    assert run("graph", "check").exit_code == 0
    missing = run("graph", "check", "--restore", "7")
    assert missing.exit_code == 2 and "there is no backup" in missing.stderr
