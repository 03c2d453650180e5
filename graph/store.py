"""The durable universal graph: SQLite metadata table plus ``.npz`` feature/edge segments.

Every mutation is one SQLite transaction that also registers the new ``.npz`` segment
(written and renamed before the transaction commits). A crash at any point leaves the
previous graph loadable; a segment file that was never registered is ignored. Before its
first write a store backs up its metadata (graph/backups.py).

Damage is reported, never guessed around: an unreadable ``graph.sqlite`` or segment, or
segment files that no metadata registers, raise :class:`CorruptionError` pointing at
``diffgraph graph check``. A damaged record is skipped with a warning when listing and
refused by name when asked for.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from graph import backups
from graph.connection import connect
from graph.errors import (
    CorruptionError,
    DuplicateIdError,
    EmbeddingShapeError,
    GraphError,
    SchemaVersionError,
    UnknownExpertError,
    UnreadableRecordError,
    first_error,
)
from graph.lock import writer_lock
from graph.records import (
    BaseFamily,
    Calibration,
    Expert,
    ExpertKind,
    ExpertStatus,
    ReferencePrompt,
)
from graph.segments import (
    Segment,
    check_segment,
    concat,
    last_rows,
    merge_edge_scores,
    nonfinite_rows,
    read_segment,
    segment_files,
    write_segment,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SMALL_SEGMENT_RUN = 16

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    base TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    nbytes INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class GraphArrays:
    """Dense view of the live graph, rows in insertion order.

    ``edge_index[0]`` indexes ``expert_ids``, ``edge_index[1]`` indexes ``ref_ids``;
    ``edge_attr`` columns follow ``metric_names`` (NaN where a metric was not measured).
    """

    expert_ids: list[str]
    expert_kind: np.ndarray
    expert_base: np.ndarray
    expert_status: np.ndarray
    expert_x: np.ndarray
    ref_ids: list[str]
    ref_x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    metric_names: list[str]
    revision: int

    # Derived views below are built on first use and kept with these arrays, i.e. until the
    # next revision: read them, do not change them.

    def expert_rows(self) -> dict[str, int]:
        """Row of each expert id."""
        return self._expert_rows

    @cached_property
    def _expert_rows(self) -> dict[str, int]:
        return {expert_id: row for row, expert_id in enumerate(self.expert_ids)}

    @cached_property
    def partition_sizes(self) -> dict[tuple[str, str, str], int]:
        """Number of experts per (kind, base family, status) value present."""
        keys = np.char.add(np.char.add(self.expert_kind, "/"), self.expert_base)
        keys = np.char.add(np.char.add(keys, "/"), self.expert_status)
        values, counts = np.unique(keys, return_counts=True)
        return {tuple(str(v).split("/")): int(n) for v, n in zip(values, counts, strict=True)}

    @cached_property
    def edge_expert_ids(self) -> np.ndarray:
        """Expert id of each calibration edge (an object array)."""
        return np.asarray(self.expert_ids, dtype=object)[self.edge_index[0]]


class GraphStore:
    """Persistent, incrementally updated store of expert and reference-prompt nodes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.segment_dir = self.root / "segments"
        self.segment_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._segment_cache: dict[str, Segment] = {}
        self._arrays: GraphArrays | None = None
        self._obsolete: list[str] = []
        self._warned: set[str] = set()
        self._backed_up_at: float | None = None
        if not (self.root / "graph.sqlite").exists():  # refused before one is made
            self._refuse_orphans(registered=False)
        self._db = connect(self.root / "graph.sqlite")
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._init_schema()
        except BaseException:
            self._db.close()
            raise

    # -- setup -------------------------------------------------------------------------

    def _refuse_orphans(self, registered: bool) -> None:
        """Segment files that no metadata registers: graph.sqlite was lost or replaced."""
        orphans = [] if registered else segment_files(self.segment_dir)
        if orphans:
            raise CorruptionError(
                f"{self.root / 'graph.sqlite'} registers none of the {len(orphans)} segment "
                f"files in {self.segment_dir} (it was lost, emptied or replaced): run "
                "`diffgraph graph check --repair` to restore it from the newest good backup"
            )

    def _init_schema(self) -> None:
        self._db.executescript(_SCHEMA)
        self._refuse_orphans(registered=bool(self._registered_segments()))
        problem = meta_problem(self._db)
        if problem:
            raise CorruptionError(
                f"graph metadata {self.root / 'graph.sqlite'} is damaged ({problem}): run "
                "`diffgraph graph check --repair` to restore it from the newest good backup"
            )
        version = self._meta("schema_version")
        if version is None:
            with self._transaction() as db:
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('revision', '0'), "
                    "('uid', ?)",
                    (str(SCHEMA_VERSION), uuid.uuid4().hex),
                )
        elif int(version) != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"graph at {self.root} has schema version {version}, this DiffGraph reads "
                f"version {SCHEMA_VERSION}: export it with the DiffGraph that wrote it, or "
                "rebuild it with `diffgraph crawl`"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._backup()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                self._obsolete.clear()
                raise
            self._db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'"
            )
            self._db.execute("COMMIT")
            kept = backups.backed_up_segments(self.root) if self._obsolete else set()
            for name in self._obsolete:
                if name not in kept:  # a backup still needs it: pruning the backup drops it
                    (self.segment_dir / name).unlink(missing_ok=True)
                self._segment_cache.pop(name, None)
            self._obsolete.clear()

    def _backup(self) -> None:
        """Back up the metadata before this store's first write, then every interval."""
        now = time.monotonic()
        if self._backed_up_at is not None and now - self._backed_up_at < backups.BACKUP_INTERVAL_S:
            return
        self._backed_up_at = now
        live = {name for name, _ in self._registered_segments()}
        if live:  # an empty graph has nothing to undo
            backups.take_backup(self._db, self.root)
            backups.prune(self.root, self.segment_dir, live)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- simple reads ------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return int(self._meta("revision") or 0)

    @property
    def uid(self) -> str:
        """Random id of this graph (made when the store was created; a store written before
        ids existed gets one now). It namespaces the graph's Chroma collections."""
        value = self._meta("uid")
        if not value:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('uid', ?)", (uuid.uuid4().hex,)
                )
            value = self._meta("uid") or ""
        return value

    @property
    def index_stamp(self) -> dict | None:
        """What the retrieval index last mirrored (written by the index, not a graph change).

        An unreadable stamp reads as None: the index is then rebuilt."""
        try:
            stamp = json.loads(self._meta("index_stamp") or "null")
        except json.JSONDecodeError:
            return None
        return stamp if isinstance(stamp, dict) else None

    def set_index_stamp(self, stamp: dict | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('index_stamp', ?)",
                (json.dumps(stamp) if stamp is not None else "",),
            )

    @property
    def embedding_dim(self) -> int | None:
        value = self._meta("embedding_dim")
        return int(value) if value else None

    @property
    def metric_names(self) -> list[str]:
        return json.loads(self._meta("metric_names") or "[]")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM experts").fetchone()[0]

    def has_expert(self, expert_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM experts WHERE id = ?", (expert_id,)).fetchone()
        return row is not None

    def expert(self, expert_id: str) -> Expert:
        row = self._db.execute("SELECT record FROM experts WHERE id = ?", (expert_id,)).fetchone()
        if row is None:
            raise UnknownExpertError(expert_id)
        return parse_expert(expert_id, row[0])

    def experts(
        self,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
        status: ExpertStatus | None = None,
        ids: Sequence[str] | None = None,
        skip_unreadable: bool = False,
    ) -> list[Expert]:
        """Expert records matching every given filter, in insertion order.

        A damaged record is skipped with a warning; one asked for by id raises
        :class:`UnreadableRecordError` unless ``skip_unreadable``.
        """
        clauses, params = self._filters(kind, base, status)
        if ids is None:
            rows = self._db.execute(
                f"SELECT id, record FROM experts {clauses} ORDER BY seq", params
            ).fetchall()
        else:  # read only the rows asked for: a search must not parse the whole graph
            rows = []
            wanted = list(dict.fromkeys(ids))
            join = " AND " if clauses else "WHERE "
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(
                    f"SELECT id, record FROM experts {clauses}{join}id IN ({marks})",
                    [*params, *chunk],
                ).fetchall()
        records: dict[str, Expert | None] = {}
        for expert_id, text in rows:
            try:
                records[expert_id] = parse_expert(expert_id, text)
            except UnreadableRecordError as exc:
                if ids is not None and not skip_unreadable:
                    raise
                self._warn(exc)
                records[expert_id] = None
        if ids is None:
            return [e for e in records.values() if e is not None]
        missing = [i for i in ids if i not in records]
        if missing:
            raise UnknownExpertError(missing[0])
        return [e for i in ids if (e := records[i]) is not None]

    def _warn(self, exc: UnreadableRecordError) -> None:
        if exc.record_id not in self._warned:  # once per record and store
            self._warned.add(exc.record_id)
            log.warning("skipped: %s", exc)

    @staticmethod
    def _filters(kind, base, status) -> tuple[str, list[str]]:
        parts, params = [], []
        for column, value in (("kind", kind), ("base", base), ("status", status)):
            if value is not None:
                parts.append(f"{column} = ?")
                params.append(value.value)
        return ("WHERE " + " AND ".join(parts)) if parts else "", params

    def reference_prompts(self) -> list[ReferencePrompt]:
        """Reference prompts in insertion order; a damaged one is skipped with a warning."""
        refs = []
        for ref_id, text in self._db.execute("SELECT id, text FROM refs ORDER BY seq"):
            try:
                refs.append(parse_ref(ref_id, text))
            except UnreadableRecordError as exc:
                self._warn(exc)
        return refs

    def history(self, expert_id: str) -> list[Expert]:
        """Every version of the expert's lineage, oldest first."""
        expert = self.expert(expert_id)
        lineage = expert.lineage or expert.id
        return [e for e in self.experts() if (e.lineage or e.id) == lineage]

    def stats(self) -> dict[str, object]:
        counts = self._db.execute(
            "SELECT kind, base, status, COUNT(*) FROM experts GROUP BY kind, base, status"
        ).fetchall()
        arrays = self.arrays()
        return {
            "experts": sum(c[3] for c in counts),
            "by_kind_base_status": [
                {"kind": k, "base": b, "status": s, "count": n} for k, b, s, n in counts
            ],
            "reference_prompts": len(arrays.ref_ids),
            "calibration_edges": int(arrays.edge_index.shape[1]),
            "metrics": arrays.metric_names,
            "embedding_dim": self.embedding_dim,
            "revision": arrays.revision,
            "segments": len(self._registered_segments()),
            "schema_version": SCHEMA_VERSION,
        }

    # -- writes ------------------------------------------------------------------------

    def add_experts(self, items: Iterable[tuple[Expert, np.ndarray]]) -> None:
        """Register new expert nodes with their description embeddings (all or none)."""
        items = list(items)
        if not items:
            return
        ids = [e.id for e, _ in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DuplicateIdError(f"expert id {dup!r} appears twice in one batch")
        x = self._check_embeddings([v for _, v in items], "expert")
        with self._transaction() as db:
            taken = self._existing(db, "experts", ids)
            if taken:
                raise DuplicateIdError(
                    f"expert id {taken[0]!r} is already in the graph: use `add_version` for a "
                    "new version, or remove the old expert first"
                )
            seqs = [self._insert_expert(db, e) for e, _ in items]
            self._write_and_register(db, Segment(expert_seq=np.asarray(seqs, np.int64), expert_x=x))
            self._set_dim(db, x.shape[1])

    def add_expert(self, expert: Expert, embedding: np.ndarray) -> None:
        self.add_experts([(expert, embedding)])

    def update_expert(self, expert: Expert, embedding: np.ndarray | None = None) -> None:
        """Replace an expert's record (and its embedding when given); keeps its edges."""
        x = None if embedding is None else self._check_embeddings([embedding], "expert")
        old = self.expert(expert.id)
        if (old.kind, old.base) != (expert.kind, expert.base):
            raise GraphError(
                f"expert {expert.id!r} is {old.kind.value}/{old.base.value}; an update cannot "
                "change kind or base family: register a new expert instead"
            )
        with self._transaction() as db:
            row = db.execute("SELECT seq FROM experts WHERE id = ?", (expert.id,)).fetchone()
            if row is None:
                raise UnknownExpertError(expert.id)
            self._write_record(db, expert)
            if x is not None:
                self._write_and_register(
                    db, Segment(expert_seq=np.asarray([row[0]], np.int64), expert_x=x)
                )

    def add_version(self, old_id: str, expert: Expert, embedding: np.ndarray) -> Expert:
        """Add ``expert`` as the new version of ``old_id``, which is deprecated (kept)."""
        old = self.expert(old_id)
        if old.kind != expert.kind or old.base != expert.base:
            raise GraphError(
                f"new version {expert.id!r} is {expert.kind.value}/{expert.base.value} but "
                f"{old_id!r} is {old.kind.value}/{old.base.value}: a version must keep kind "
                "and base family"
            )
        new = expert.model_copy(update={"lineage": old.lineage or old.id, "supersedes": old.id})
        x = self._check_embeddings([embedding], "expert")
        with self._transaction() as db:
            if self._existing(db, "experts", [new.id]):
                raise DuplicateIdError(f"expert id {new.id!r} is already in the graph")
            seq = self._insert_expert(db, new)
            self._write_record(
                db,
                old.model_copy(
                    update={
                        "status": ExpertStatus.DEPRECATED,
                        "superseded_by": new.id,
                        "status_reason": f"superseded by {new.id}",
                        "updated_at": _now(),
                    }
                ),
            )
            self._write_and_register(
                db, Segment(expert_seq=np.asarray([seq], np.int64), expert_x=x)
            )
        return new

    def deprecate(self, expert_id: str, reason: str = "deprecated") -> None:
        expert = self.expert(expert_id)
        with self._transaction() as db:
            self._write_record(
                db,
                expert.model_copy(
                    update={
                        "status": ExpertStatus.DEPRECATED,
                        "status_reason": reason,
                        "updated_at": _now(),
                    }
                ),
            )

    def remove(self, expert_id: str) -> None:
        """Delete an expert and (logically) its calibration edges."""
        with self._transaction() as db:
            if db.execute("DELETE FROM experts WHERE id = ?", (expert_id,)).rowcount == 0:
                raise UnknownExpertError(expert_id)

    def add_reference_prompts(self, items: Iterable[tuple[ReferencePrompt, np.ndarray]]) -> None:
        items = list(items)
        if not items:
            return
        ids = [r.id for r, _ in items]
        if len(set(ids)) != len(ids):
            raise DuplicateIdError("a reference prompt id appears twice in one batch")
        x = self._check_embeddings([v for _, v in items], "reference prompt")
        with self._transaction() as db:
            taken = self._existing(db, "refs", ids)
            if taken:
                raise DuplicateIdError(f"reference prompt id {taken[0]!r} is already in the graph")
            seqs = [
                db.execute("INSERT INTO refs (id, text) VALUES (?, ?)", (r.id, r.text)).lastrowid
                for r, _ in items
            ]
            self._write_and_register(db, Segment(ref_seq=np.asarray(seqs, np.int64), ref_x=x))
            self._set_dim(db, x.shape[1])

    def set_calibrations(self, calibrations: Iterable[Calibration]) -> None:
        """Add or replace calibration scores (per metric) of expert × reference-prompt pairs."""
        calibrations = list(calibrations)
        if not calibrations:
            return
        names = sorted({m for c in calibrations for m in c.scores})
        attr = np.full((len(calibrations), len(names)), np.nan, np.float32)
        for i, c in enumerate(calibrations):
            for name, value in c.scores.items():
                attr[i, names.index(name)] = value
        with self._transaction() as db:
            expert_seq = self._seqs(db, "experts", [c.expert_id for c in calibrations])
            ref_seq = self._seqs(db, "refs", [c.ref_id for c in calibrations])
            known = json.loads(self._meta("metric_names") or "[]")
            merged = known + [m for m in names if m not in known]
            if merged != known:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('metric_names', ?)", (json.dumps(merged),)
                )
            self._write_and_register(
                db,
                Segment(
                    edge_expert_seq=expert_seq,
                    edge_ref_seq=ref_seq,
                    edge_attr=attr,
                    metric_names=names,
                ),
            )

    def calibrated_pairs(self, expert_id: str) -> set[str]:
        """Reference-prompt ids that already have scores for ``expert_id``."""
        arrays = self.arrays()
        row = arrays.expert_rows().get(expert_id)
        if row is None:
            raise UnknownExpertError(expert_id)
        refs = arrays.edge_index[1, arrays.edge_index[0] == row]
        return {arrays.ref_ids[r] for r in refs}

    def compact(self) -> None:
        """Rewrite all segments as one, dropping removed nodes and overridden values.

        Callers need not be UniversalGraph: it takes the writer lock of the data directory
        (the store's parent) itself."""
        with writer_lock(self.root.parent), self._transaction() as db:
            old = self._registered_segments(db)
            arrays = self._build_arrays(db)
            expert_seq, ref_seq = self._live_seqs(db)
            segment = Segment(
                expert_seq=expert_seq,
                expert_x=arrays.expert_x,
                ref_seq=ref_seq,
                ref_x=arrays.ref_x,
                edge_expert_seq=expert_seq[arrays.edge_index[0]],
                edge_ref_seq=ref_seq[arrays.edge_index[1]],
                edge_attr=arrays.edge_attr,
                metric_names=arrays.metric_names,
            )
            self._write_and_register(db, segment, compacting=False)
            db.executemany("DELETE FROM segments WHERE name = ?", [(n,) for n, _ in old])
            self._obsolete += [n for n, _ in old]

    # -- arrays ------------------------------------------------------------------------

    def arrays(self) -> GraphArrays:
        """The live graph as dense arrays (cached until the next revision)."""
        with self._lock:
            if self._arrays is None or self._arrays.revision != self.revision:
                self._arrays = self._read_arrays()
            return self._arrays

    def _read_arrays(self) -> GraphArrays:
        """The arrays of one committed revision, read in one snapshot. Another process may
        commit meanwhile and unlink segments it merged: then read its revision instead."""
        failed_at = None
        while True:
            with self._snapshot():
                revision = int(self._meta("revision") or 0)
                try:
                    return self._build_arrays(self._db)
                except GraphError:
                    if revision == failed_at:  # nothing changed: the folder is inconsistent
                        raise
            failed_at = revision

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: every query in it sees the same committed revision."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def embeddings(self, expert_ids: Sequence[str]) -> np.ndarray:
        arrays = self.arrays()
        rows = arrays.expert_rows()
        missing = [i for i in expert_ids if i not in rows]
        if missing:
            raise UnknownExpertError(missing[0])
        return arrays.expert_x[[rows[i] for i in expert_ids]]

    def _build_arrays(self, db: sqlite3.Connection) -> GraphArrays:
        revision = int(db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])
        dim = self.embedding_dim or 0
        metric_names = json.loads(self._meta("metric_names") or "[]")
        names = [n for n, _ in self._registered_segments(db)]
        merged = concat([self._load_segment(n) for n in names], dim, metric_names)
        experts = db.execute("SELECT seq, id, kind, base, status FROM experts ORDER BY seq")
        experts = experts.fetchall()
        refs = db.execute("SELECT seq, id FROM refs ORDER BY seq").fetchall()
        expert_seq = np.asarray([r[0] for r in experts], np.int64)
        ref_seq = np.asarray([r[0] for r in refs], np.int64)

        expert_x = _rows_for(expert_seq, merged.expert_seq, merged.expert_x, dim, "expert")
        ref_x = _rows_for(ref_seq, merged.ref_seq, merged.ref_x, dim, "reference prompt")

        span = int(max(ref_seq.max(initial=0), merged.edge_ref_seq.max(initial=0))) + 1
        keys = merged.edge_expert_seq * span + merged.edge_ref_seq
        attr = merged.edge_attr
        if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():  # compacted edges are unique
            keys, attr = merge_edge_scores(keys, attr)
        expert_row = _row_lookup(expert_seq, merged.edge_expert_seq)
        ref_row = _row_lookup(ref_seq, merged.edge_ref_seq)
        rows = np.stack([expert_row[keys // span], ref_row[keys % span]])
        live = (rows >= 0).all(axis=0)
        edge_index = rows[:, live]
        return GraphArrays(
            expert_ids=[r[1] for r in experts],
            expert_kind=np.asarray([r[2] for r in experts], dtype="U4"),
            expert_base=np.asarray([r[3] for r in experts], dtype="U5"),
            expert_status=np.asarray([r[4] for r in experts], dtype="U10"),
            expert_x=expert_x,
            ref_ids=[r[1] for r in refs],
            ref_x=ref_x,
            edge_index=edge_index,
            edge_attr=attr[live],
            metric_names=metric_names,
            revision=revision,
        )

    def _live_seqs(self, db: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
        experts = db.execute("SELECT seq FROM experts ORDER BY seq").fetchall()
        refs = db.execute("SELECT seq FROM refs ORDER BY seq").fetchall()
        return (
            np.asarray([r[0] for r in experts], np.int64),
            np.asarray([r[0] for r in refs], np.int64),
        )

    def _load_segment(self, name: str) -> Segment:
        if name not in self._segment_cache:
            path = self.segment_dir / name
            if not path.exists():
                raise CorruptionError(
                    f"graph segment {path} is registered but missing: run "
                    "`diffgraph graph check --repair` to drop it and quarantine what it held"
                )
            try:
                segment = read_segment(path)
                check_segment(segment, self.embedding_dim, self.metric_names)
                bad = sum(int(mask.sum()) for mask in nonfinite_rows(segment))
                if bad:
                    raise ValueError(f"{bad} rows hold NaN or infinite values")
            except ValueError as exc:
                raise CorruptionError(
                    f"graph segment {path} is damaged ({exc}): run "
                    "`diffgraph graph check --repair` to quarantine it"
                ) from exc
            self._segment_cache[name] = segment
        return self._segment_cache[name]

    # -- internals ---------------------------------------------------------------------

    def _registered_segments(self, db: sqlite3.Connection | None = None) -> list[tuple[str, int]]:
        db = db or self._db
        return db.execute("SELECT name, nbytes FROM segments ORDER BY seq").fetchall()

    def _write_and_register(
        self, db: sqlite3.Connection, segment: Segment, compacting: bool = True
    ) -> None:
        try:
            name = write_segment(self.segment_dir, segment)
        except OSError as exc:
            raise GraphError(
                f"could not write a graph segment under {self.segment_dir} ({exc}); free disk "
                "space or fix permissions and retry: nothing was changed"
            ) from exc
        try:
            db.execute("INSERT INTO segments (name, nbytes) VALUES (?, ?)", (name, segment.nbytes))
        except BaseException:
            (self.segment_dir / name).unlink(missing_ok=True)
            raise
        self._segment_cache[name] = segment
        if compacting:
            self._merge_small_tail(db)

    def _merge_small_tail(self, db: sqlite3.Connection) -> None:
        """Keep the segment count bounded: merge the run of small trailing segments."""
        segments = self._registered_segments(db)
        if len(segments) <= SMALL_SEGMENT_RUN:
            return
        largest = max(n for _, n in segments)
        run = []
        for name, nbytes in reversed(segments):
            if nbytes * 8 > largest:
                break
            run.append(name)
        run.reverse()
        if len(run) < 2:
            return
        merged = concat(
            [self._load_segment(n) for n in run], self.embedding_dim or 0, self.metric_names
        )
        self._write_and_register(db, merged, compacting=False)
        db.executemany("DELETE FROM segments WHERE name = ?", [(n,) for n in run])
        self._obsolete += run  # unlinked once the transaction commits

    def _insert_expert(self, db: sqlite3.Connection, expert: Expert) -> int:
        return db.execute(
            "INSERT INTO experts (id, kind, base, status, record) VALUES (?, ?, ?, ?, ?)",
            (
                expert.id,
                expert.kind.value,
                expert.base.value,
                expert.status.value,
                expert.model_dump_json(),
            ),
        ).lastrowid

    def _write_record(self, db: sqlite3.Connection, expert: Expert) -> None:
        db.execute(
            "UPDATE experts SET kind = ?, base = ?, status = ?, record = ? WHERE id = ?",
            (
                expert.kind.value,
                expert.base.value,
                expert.status.value,
                expert.model_dump_json(),
                expert.id,
            ),
        )

    @staticmethod
    def _existing(db: sqlite3.Connection, table: str, ids: list[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += [
                r[0] for r in db.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", chunk)
            ]
        return found

    @staticmethod
    def _seqs(db: sqlite3.Connection, table: str, ids: list[str]) -> np.ndarray:
        lookup: dict[str, int] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            lookup.update(db.execute(f"SELECT id, seq FROM {table} WHERE id IN ({marks})", chunk))
        missing = [i for i in unique if i not in lookup]
        if missing:
            if table == "experts":
                raise UnknownExpertError(missing[0])
            raise GraphError(
                f"no reference prompt with id {missing[0]!r}: add it with "
                "`diffgraph graph add-ref-prompts` first"
            )
        return np.asarray([lookup[i] for i in ids], np.int64)

    def _check_embeddings(self, vectors: list[np.ndarray], what: str) -> np.ndarray:
        x = np.asarray(np.stack([np.asarray(v, np.float32).reshape(-1) for v in vectors]))
        expected = self.embedding_dim
        if expected is not None and x.shape[1] != expected:
            raise EmbeddingShapeError(
                f"{what} embedding has {x.shape[1]} dimensions, the graph expects {expected} "
                "(embed with the same model the graph was built with)"
            )
        if not np.isfinite(x).all():
            raise EmbeddingShapeError(f"{what} embedding contains NaN or infinite values")
        return x

    @staticmethod
    def _set_dim(db: sqlite3.Connection, dim: int) -> None:
        db.execute("INSERT OR IGNORE INTO meta VALUES ('embedding_dim', ?)", (str(dim),))


def meta_problem(db: sqlite3.Connection) -> str | None:
    """What is wrong with the ``meta`` table's values, or None."""
    values = dict(db.execute("SELECT key, value FROM meta").fetchall())
    for key in ("schema_version", "revision", "embedding_dim"):
        value = values.get(key)
        if value and not str(value).isdigit():
            return f"meta {key} is {value!r}, not a number"
    try:
        names = json.loads(values.get("metric_names") or "[]")
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return f"meta metric_names is {values.get('metric_names')!r}, not a JSON list of names"
    if "schema_version" in values and "revision" not in values:
        return "meta revision is missing"
    return None


def parse_expert(expert_id: str, text: str) -> Expert:
    try:
        return Expert.model_validate_json(text)
    except ValidationError as exc:
        raise UnreadableRecordError("experts", expert_id, first_error(exc)) from exc


def parse_ref(ref_id: str, text: str) -> ReferencePrompt:
    try:
        return ReferencePrompt(id=ref_id, text=text)
    except ValidationError as exc:
        raise UnreadableRecordError("refs", ref_id, first_error(exc)) from exc


def _row_lookup(live_seq: np.ndarray, referenced: np.ndarray) -> np.ndarray:
    """Table mapping a sequence number to its row among the live nodes (-1 if not live)."""
    size = int(max(live_seq.max(initial=0), referenced.max(initial=0))) + 1
    table = np.full(size, -1, np.int64)
    table[live_seq] = np.arange(len(live_seq))
    return table


def _rows_for(
    wanted: np.ndarray, seqs: np.ndarray, x: np.ndarray | None, dim: int, what: str
) -> np.ndarray:
    if not len(wanted):
        return np.zeros((0, dim), np.float32)
    if np.array_equal(seqs, wanted):  # one compacted segment, nothing removed: no copy
        return x
    last = last_rows(seqs)
    unique = seqs[last]
    pos = np.searchsorted(unique, wanted)
    if (pos >= len(unique)).any() or (unique[np.minimum(pos, len(unique) - 1)] != wanted).any():
        raise CorruptionError(
            f"a {what} has no stored embedding: run `diffgraph graph check --repair` to "
            "quarantine it"
        )
    return x[last[pos]]


def _now() -> datetime:
    return datetime.now(timezone.utc)
