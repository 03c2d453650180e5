"""A small graph store and ways to damage it (test_corruption.py, bench/hardening.py)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np

from graph.records import Calibration, ReferencePrompt
from graph.segments import Segment, read_segment, write_segment
from graph.store import GraphStore
from tests.graph.helpers import DIM, expert, vec

SEGMENT_KINDS = ("refs", "experts", "edges")


def seed(data: Path) -> dict[str, str]:
    """Three refs, three experts and two edges written in two sessions (the second one
    backs up the first's graph); returns each segment kind's file name."""
    with GraphStore(data / "graph") as store:
        store.add_reference_prompts(
            (ReferencePrompt(id=f"r{i}", text=f"prompt {i}"), vec(100 + i)) for i in range(3)
        )
        store.add_experts([(expert(i), vec(n)) for n, i in enumerate("abc")])
    with GraphStore(data / "graph") as store:
        store.set_calibrations(
            [
                Calibration(expert_id="a", ref_id="r0", scores={"clip_score": 0.3}),
                Calibration(expert_id="b", ref_id="r1", scores={"clip_score": 0.4}),
            ]
        )
        names = [n for n, _ in store._registered_segments()]
    return dict(zip(SEGMENT_KINDS, names, strict=True))


def execute(data: Path, *statements: str) -> None:
    """Run ``statements`` on the data directory's ``graph.sqlite``, in one transaction."""
    with closing(sqlite3.connect(data / "graph" / "graph.sqlite")) as db, db:
        for statement in statements:
            db.execute(statement)


def damage_file(path: Path, how: str) -> None:
    """Overwrite ``path``: "truncated", "zeroed" or "random"."""
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "zeroed":
        path.write_bytes(b"\0" * len(raw))
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    else:
        raise AssertionError(how)


def damage_segment(path: Path, how: str) -> None:
    """As ``damage_file``, or "wrong width", "NaN rows" or "missing"."""
    if how == "wrong width":
        _rewrite_segment(path, _wide)
    elif how == "NaN rows":
        _rewrite_segment(path, _nan_row)
    elif how == "missing":
        path.unlink()
    else:
        damage_file(path, how)


def damage_graph_sqlite(data: Path, how: str) -> None:
    """As ``damage_file``, or "missing", "empty" or "bad meta" (a wrong embedding width)."""
    db = data / "graph" / "graph.sqlite"
    if how == "missing":
        db.unlink()
    elif how == "empty":
        db.write_bytes(b"")
    elif how == "bad meta":
        execute(data, "UPDATE meta SET value = 'x' WHERE key = 'embedding_dim'")
    else:
        damage_file(db, how)


def lose_graph_sqlite(data: Path) -> None:
    """One session's graph (no backup), then its ``graph.sqlite`` deleted."""
    with GraphStore(data / "graph") as store:
        store.add_experts([(expert("a"), vec(1))])
    (data / "graph" / "graph.sqlite").unlink()


def _rewrite_segment(path: Path, change: Callable[[Segment], None]) -> None:
    segment = read_segment(path)
    change(segment)
    name = write_segment(path.parent, segment)
    os.replace(path.parent / name, path)


def _wide(segment: Segment) -> None:
    if segment.expert_x is not None:
        segment.expert_x = np.ones((len(segment.expert_seq), DIM + 3), np.float32)
    if segment.ref_x is not None:
        segment.ref_x = np.ones((len(segment.ref_seq), DIM + 3), np.float32)
    if segment.edge_attr is not None:
        segment.edge_attr = np.ones((len(segment.edge_attr), 4), np.float32)


def _nan_row(segment: Segment) -> None:
    for x in (segment.expert_x, segment.ref_x):
        if x is not None:
            x[1, 0] = np.nan
    if segment.edge_attr is not None:
        segment.edge_attr[1, 0] = np.inf
