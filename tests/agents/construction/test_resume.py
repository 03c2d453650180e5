"""A crawl killed in the middle finishes on restart, without duplicates."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TypedDict

import pytest

from agents.construction.graph import find_session, make_context, run_crawl
from agents.construction.schemas import CrawlRequest
from graph.universal import UniversalGraph
from tests.agents.construction.conftest import make_settings, run, trace_events

ROOT = Path(__file__).resolve().parents[3]


def test_a_crash_after_a_graph_write_resumes_without_duplicates(platform, tmp_path, embedder):
    settings = make_settings(tmp_path / "data", browser="off")
    request = CrawlRequest(source="demo", platform_url=platform.url, calibrate=False, max_experts=5)
    checkpoints = settings.data_dir / "crawl" / "checkpoints.sqlite"
    third = sorted(platform.catalogue.models(), key=lambda m: m.id)[2]  # listed third
    victim = f"demo-{third.id}-v{third.latest.id}"
    with ExitStack() as stack:
        graph = stack.enter_context(UniversalGraph(settings.graph, embedder))
        ctx = make_context(request, settings, graph, stack)
        add = graph.add_expert

        def add_then_die(expert, embedding=None):
            add(expert, embedding)
            if expert.id == victim:  # the store has it, the checkpoint does not
                raise KeyboardInterrupt

        graph.add_expert = add_then_die
        with pytest.raises(KeyboardInterrupt):
            run_crawl(request, ctx, checkpoints)
        assert graph.store.has_expert(victim) and len(graph.experts()) == 3
    report = run(settings, request, embedder)
    assert report.session.endswith("-1")  # the same session, resumed
    ids = report.registered + [o.item for o in report.failed]
    assert len(ids) == len(set(ids)) == 5
    assert victim in report.registered
    with UniversalGraph(settings.graph, embedder) as graph:
        stored = [e.id for e in graph.experts()]
        assert sorted(stored) == sorted(report.registered)
    starts = [e for e in trace_events(settings) if e["event"] == "run_start"]
    assert [e["data"]["resumed"] for e in starts] == [False, True]


def test_a_finished_session_is_not_resumed(platform, tmp_path, embedder):
    settings = make_settings(tmp_path / "data", browser="off")
    request = CrawlRequest(source="demo", platform_url=platform.url, calibrate=False, max_experts=2)
    first = run(settings, request, embedder)
    second = run(settings, request, embedder)
    assert first.session.endswith("-1") and second.session.endswith("-2")
    processed = second.registered + [o.item for o in second.failed]  # the bad hash fails
    assert len(processed) == 2 and not set(first.registered) & set(processed)


class _Steps(TypedDict, total=False):
    one: int
    two: int


def test_a_kill_between_a_nodes_writes_and_the_next_checkpoint_is_resumed():
    """LangGraph then shows no ``next`` node, but the task with saved writes is pending."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    class DiesAfterWrites(SqliteSaver):
        dying = False
        armed = True  # dies once (newer LangGraph writes the pending task's channel again)

        def put(self, config, checkpoint, metadata, new_versions):
            if self.dying:
                self.dying = self.armed = False
                raise KeyboardInterrupt
            return super().put(config, checkpoint, metadata, new_versions)

        def put_writes(self, config, writes, task_id, task_path=""):
            super().put_writes(config, writes, task_id, task_path)
            self.dying = self.armed and any(channel == "one" for channel, _ in writes)

    builder = StateGraph(_Steps)
    builder.add_node("first", lambda state: {"one": 1})
    builder.add_node("second", lambda state: {"two": 2})
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    saver = DiesAfterWrites(sqlite3.connect(":memory:", check_same_thread=False))
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "crawl-key-1"}}
    with pytest.raises(KeyboardInterrupt):
        graph.invoke({"one": 0}, config, durability="sync")
    assert graph.get_state(config).next == ()
    assert find_session(graph, "key") == ("crawl-key-1", True)
    assert graph.invoke(None, config) == {"one": 1, "two": 2}
    assert find_session(graph, "key") == ("crawl-key-2", False)


def _expert_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM experts").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def test_sigkill_in_the_middle_and_a_restart_finish_the_job(platform, llm, tmp_path):
    data = tmp_path / "data"
    env = {
        **os.environ,
        "DIFFGRAPH_DATA_DIR": str(data),
        "DIFFGRAPH_PLATFORMS__REQUESTS_PER_S": "100",
        "DIFFGRAPH_PLATFORMS__BROWSER": "off",  # pages are tested in-process; keep this fast
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_MODEL": llm.model,
        "OPENAI_API_KEY": "sk-test-scripted-0123456789abcdef",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, str(ROOT / "main.py"), "crawl", "--source", "demo",
        "--platform-url", platform.url, "--no-calibrate",
    ]  # fmt: skip
    crawl = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    db = data / "graph" / "graph.sqlite"
    deadline = time.monotonic() + 240
    while _expert_count(db) < 3 and crawl.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert crawl.poll() is None, "the crawl ended before it could be killed"
    crawl.send_signal(signal.SIGKILL)
    crawl.wait()
    killed_at = _expert_count(db)
    total = len(platform.catalogue.models())
    assert 3 <= killed_at < total - 2  # killed with work left (one model has a bad hash)
    done = subprocess.run(
        [*command, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the root CLI's log handler also writes to stdout: the report is the last JSON object
    out = done.stdout
    report = json.loads(out[out.rfind("\n{\n") + 1 :] if "\n{\n" in out else out)
    assert report["session"].endswith("-1") and report["demo"] is True
    ids = report["registered"] + [o["item"] for o in report["failed"]]
    assert len(ids) == len(set(ids)) == total
    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM experts")]
    assert sorted(stored) == sorted(report["registered"])
