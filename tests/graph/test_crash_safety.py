"""A crash in the middle of a save leaves the previous graph loadable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graph.segments as segments
from graph.errors import GraphError, SchemaVersionError
from graph.store import GraphStore
from tests.graph.helpers import expert, vec


def _seed(path):
    with GraphStore(path) as s:
        s.add_experts([(expert("a"), vec(1)), (expert("b"), vec(2))])
        return s.revision


def _assert_previous(path, revision):
    with GraphStore(path) as s:
        assert s.revision == revision
        assert s.arrays().expert_ids == ["a", "b"]
        np.testing.assert_array_equal(s.embeddings(["a"]), vec(1)[None])


def test_failure_while_writing_a_segment(tmp_path, monkeypatch):
    revision = _seed(tmp_path / "g")

    def broken_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segments.np, "savez", broken_savez)
    with GraphStore(tmp_path / "g") as s, pytest.raises(GraphError, match="nothing was changed"):
        s.add_expert(expert("c"), vec(3))
    monkeypatch.undo()
    _assert_previous(tmp_path / "g", revision)
    assert not list((tmp_path / "g" / "segments").glob("tmp-*"))


@pytest.mark.parametrize("crash_at", ["before_rename", "after_rename"])
def test_process_killed_mid_save(tmp_path, crash_at):
    revision = _seed(tmp_path / "g")
    script = textwrap.dedent(
        f"""
        import os
        import graph.segments as segments
        from graph.store import GraphStore
        from tests.graph.helpers import expert, vec
        real_replace = os.replace
        def crash(src, dst):
            if {crash_at!r} == "after_rename":
                real_replace(src, dst)
            os._exit(9)  # the process dies: no cleanup, no rollback handler
        segments.os.replace = crash
        GraphStore({str(tmp_path / "g")!r}).add_expert(expert("c"), vec(3))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=_repo_root(), check=False)
    assert result.returncode == 9
    _assert_previous(tmp_path / "g", revision)
    with GraphStore(tmp_path / "g") as s:  # and the graph still takes writes
        s.add_expert(expert("c"), vec(3))
        assert s.arrays().expert_ids == ["a", "b", "c"]


def test_schema_version_is_checked(tmp_path):
    _seed(tmp_path / "g")
    import sqlite3

    db = sqlite3.connect(tmp_path / "g" / "graph.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        GraphStore(tmp_path / "g")


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
