"""One writer at a time per data directory; readers never see half an update.

``add-expert`` runs in another process while ``select`` runs in this one, started at the
moment ``select`` is halfway through reading the graph (or rebuilding its index).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.agents.selection.conftest import known_data_dir
from tests.support.locks import held_elsewhere

ROOT = Path(__file__).resolve().parents[2]
WRITER_LOCK = "graph.lock.writer_lock"
PROMPT = "a portrait of a young woman with red hair, watercolor"
LATE = [
    "--id",
    "lora-late",
    "--kind",
    "peft",
    "--base",
    "sd15",
    "--description",
    "folded origami paper cranes",
]


@pytest.fixture
def data_dir(tmp_path, monkeypatch, embedder):
    return known_data_dir(tmp_path, monkeypatch, embedder)


def invoke(*args: str):
    from tools.cli import build_app

    return CliRunner().invoke(build_app(), list(args))


def start_add_expert(data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "DIFFGRAPH_DATA_DIR": str(data_dir), "COLUMNS": "300"}
    return subprocess.Popen(
        [sys.executable, "main.py", "graph", "add-expert", *LATE],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def until_done_or_waiting(process: subprocess.Popen) -> str:
    """Block until ``process`` ends or says it waits for the writer lock; its stderr so far."""
    seen = ""
    for line in process.stderr:
        seen += line
        if "waiting" in line:
            break
    return seen


def finish(process: subprocess.Popen, seen: str) -> None:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, seen + err
    assert "added 1 expert(s): lora-late" in out


def test_add_expert_while_select_reads_the_graph(data_dir, monkeypatch):
    from graph.store import GraphStore

    started = []
    real = GraphStore._load_segment

    def load_segment(self, name):  # select has listed the segments, not yet the experts
        if not started:
            process = start_add_expert(data_dir)
            started.append((process, until_done_or_waiting(process)))
        return real(self, name)

    monkeypatch.setattr(GraphStore, "_load_segment", load_segment)
    selected = invoke("select", PROMPT, "--json")
    assert selected.exit_code == 0, selected.output
    assert started and "lora-red-hair" in [e["id"] for e in json.loads(selected.stdout)["loras"]]
    finish(*started[0])
    with GraphStore(data_dir / "graph") as store:
        assert store.has_expert("lora-late")


def test_add_expert_while_select_rebuilds_the_index(data_dir, monkeypatch):
    from graph.index import ChromaIndex
    from graph.store import GraphStore

    with GraphStore(data_dir / "graph") as store:
        store.set_index_stamp(None)  # the index is stale: select rebuilds it
    monkeypatch.setattr("graph.universal.EXACT_SEARCH_LIMIT", 0)  # select searches the index
    calls, started = [], []
    real_rebuild, real_collection = ChromaIndex.rebuild, ChromaIndex._collection

    def rebuild(self):
        calls.append("rebuild")
        return real_rebuild(self)

    def collection(self, *args, **kwargs):
        if calls:  # inside the rebuild
            calls.append("partition")
            if len(calls) == 3:  # the second partition: the first one is filled
                process = start_add_expert(data_dir)
                started.append((process, until_done_or_waiting(process)))
        return real_collection(self, *args, **kwargs)

    monkeypatch.setattr(ChromaIndex, "rebuild", rebuild)
    monkeypatch.setattr(ChromaIndex, "_collection", collection)
    selected = invoke("select", PROMPT, "--json")
    assert selected.exit_code == 0, selected.output
    assert started and "lora-red-hair" in [e["id"] for e in json.loads(selected.stdout)["loras"]]
    finish(*started[0])
    found = subprocess.run(  # a new process: Chroma's in-process cache is this one's
        [sys.executable, "-c", INDEX_QUERY, str(data_dir), "origami paper cranes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.stdout.split() == ["fresh", "lora-late"], found.stderr


INDEX_QUERY = """
import sys
from graph.config import GraphConfig
from graph.universal import UniversalGraph
with UniversalGraph(GraphConfig(data_dir=sys.argv[1])) as graph:
    print("fresh" if graph.index.revision == graph.store.revision else "stale")
    print(graph.index.query(graph.embedder.embed_one(sys.argv[2]), k=1)[0].expert_id)
"""


@pytest.fixture
def short_wait(monkeypatch):
    monkeypatch.setattr("graph.lock.WRITER_WAIT_S", 0.2)


def test_a_second_writer_stops_with_the_first_ones_pid(data_dir, short_wait):
    with held_elsewhere(WRITER_LOCK, data_dir) as pid:
        refused = invoke("graph", "add-expert", *LATE)
        assert refused.exit_code == 2 and "Traceback" not in refused.output
        assert f"another writer is running (pid {pid})" in refused.stderr
        assert invoke("select", PROMPT).exit_code == 0  # readers go on
    assert invoke("graph", "add-expert", *LATE).exit_code == 0


def test_a_repair_waits_for_no_one_else_writing(data_dir, short_wait):
    stray = data_dir / "graph" / "segments" / "stray.npz"
    stray.write_bytes(b"left by an interrupted write")
    with held_elsewhere(WRITER_LOCK, data_dir) as pid:
        refused = invoke("graph", "check", "--repair")
        assert refused.exit_code == 2 and "Traceback" not in refused.output
        assert f"another writer is running (pid {pid})" in refused.stderr
        assert stray.exists() and not (data_dir / "quarantine").exists()  # nothing changed
        checked = invoke("graph", "check", "--json")  # a plain check only reads
        assert checked.exit_code == 2 and "1 problem(s)" in checked.stderr
    assert invoke("graph", "check", "--repair").exit_code == 0
    assert not stray.exists()


def test_compaction_takes_the_writer_lock(data_dir, short_wait):
    from graph.lock import WriterBusyError
    from graph.store import GraphStore

    with GraphStore(data_dir / "graph") as store:
        before = store.revision
        with (
            held_elsewhere(WRITER_LOCK, data_dir) as pid,
            pytest.raises(WriterBusyError) as refused,
        ):
            store.compact()
        assert f"another writer is running (pid {pid})" in str(refused.value)
        assert store.revision == before
        store.compact()
        assert store.revision == before + 1
