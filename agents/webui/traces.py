"""The traces page: runs under ``<traces_dir>/<agent>/<run_id>.jsonl``, one run as a
timeline of its nodes, LLM calls and tool calls, and the ``eval traces`` summary (run in
its own process: nothing imports evals/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agents.webui.errors import WebUIError
from tools.tracing import TraceError, TraceEvent, read_trace

RUN_COLUMNS = ["run", "agent", "started (UTC)", "ms", "status", "mode", "LLM calls", "tools"]
TIMELINE_COLUMNS = ["start ms", "ms", "event", "node", "detail"]


def run_files(traces_dir: Path, limit: int = 200) -> list[Path]:
    """The newest trace files first."""
    files = Path(traces_dir).glob("*/*.jsonl")
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]


def run_rows(traces_dir: Path, limit: int = 200) -> list[list[Any]]:
    """One row per run file: id (``agent/run``), timing, status and counts."""
    rows = []
    for path in run_files(traces_dir, limit):
        try:
            events = read_trace(path)
        except TraceError:
            rows.append([_key(path), path.parent.name, "", None, "unreadable", "", 0, 0])
            continue
        if not events:
            continue
        start, end = events[0], events[-1]
        finished = end.event == "run_end"
        status = "error" if any(e.error for e in events if e.event in ("error", "run_end")) else ""
        status = status or ("done" if finished else "unfinished")
        rows.append(
            [
                _key(path),
                start.agent,
                f"{start.ts:%Y-%m-%d %H:%M:%S}",
                round((end.ts - start.ts).total_seconds() * 1000, 1) if finished else None,
                status,
                (end.mode or "") if finished else "",
                sum(e.event == "llm_call" for e in events),
                sum(e.event == "tool_call" for e in events),
            ]
        )
    return rows


def timeline(traces_dir: Path, key: str | None) -> list[list[Any]]:
    """The events of run ``key`` (``agent/run_id``) with start offsets and latencies."""
    events = read_trace(_path(traces_dir, key))
    if not events:
        return []
    t0 = events[0].ts
    rows = []
    for e in events:
        end_ms = (e.ts - t0).total_seconds() * 1000
        start_ms = end_ms - (e.latency_ms or 0.0)
        rows.append([round(start_ms, 1), e.latency_ms, e.event, e.node or "", _detail(e)])
    return rows


def _detail(e: TraceEvent) -> str:
    if e.llm is not None:
        tokens = f"{e.llm.prompt_tokens or 0}/{e.llm.completion_tokens or 0} tokens"
        valid = "valid" if e.llm.valid else f"invalid: {e.llm.error or ''}"
        return f"LLM {e.llm.model or ''} · {e.llm.schema_name or ''} · {tokens} · {valid}"
    if e.event == "tool_call":
        return f"tool {(e.data or {}).get('tool', '')}"
    if e.error:
        return f"error: {e.error[:300]}"
    if e.event in ("run_start", "run_end") and e.data:
        return ", ".join(f"{k}={v}" for k, v in e.data.items() if not isinstance(v, dict))[:300]
    return e.mode or ""


def summary(traces_dir: Path, config: Path | None = None) -> dict[str, Any]:
    """``diffgraph eval traces --json`` over every trace (latency, LLM usage, fallbacks)."""
    if not run_files(traces_dir, 1):
        raise WebUIError(f"no traces yet under {traces_dir}: generate or crawl first")
    command = [sys.executable, "-c", "from main import app; app()"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["eval", "traces", str(traces_dir), "--no-check", "--json"]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env=dict(os.environ), timeout=300
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise WebUIError(f"eval traces failed: {lines[-1][:500]}")
    return json.loads(done.stdout)


def _key(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _path(traces_dir: Path, key: str | None) -> Path:
    agent, _, run = (key or "").partition("/")
    if not agent or not run or any(c in key for c in ("..", "\\")) or "/" in run:
        raise WebUIError("no run chosen: pick a run from the list")
    path = Path(traces_dir) / agent / f"{run}.jsonl"
    if not path.is_file():
        raise WebUIError(f"run {key!r} has no trace file: refresh the list")
    return path
