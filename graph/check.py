"""``diffgraph graph check``: verify every store file and, with ``repair``, mend the graph.

It verifies ``graph.sqlite`` (readable, intact, sane metadata), every registered segment
(readable, consistent, finite), every record (parses, agrees with its columns, has an
embedding), that no segment file is left unregistered, and the retrieval index's entries.
Repairing never deletes: broken files and rows move to a quarantine folder
(graph/quarantine.py). An unreadable or lost ``graph.sqlite`` is restored from the newest
good backup (graph/backups.py); a segment with NaN rows is rewritten without them; the
index is rebuilt from the store. The metadata is backed up before anything changes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from graph import backups
from graph.config import GraphConfig
from graph.errors import GraphError, UnreadableRecordError
from graph.lock import writer_lock
from graph.quarantine import Quarantine
from graph.records import BaseFamily, ExpertKind, ExpertStatus
from graph.segments import (
    Segment,
    check_segment,
    nonfinite_rows,
    read_segment,
    segment_files,
    without_rows,
    write_segment,
)
from graph.store import SCHEMA_VERSION, GraphStore, meta_problem, parse_expert, parse_ref

TABLES = ("meta", "experts", "refs", "segments")
DB_NAME = "graph.sqlite"


@dataclass
class Finding:
    """One problem: what is broken, how, and what repairing does about it."""

    what: str
    problem: str
    action: str


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    repaired: bool = False
    quarantine: Path | None = None
    backups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, what: object, problem: str, action: str) -> None:
        self.findings.append(Finding(str(what), problem, action))

    def as_dict(self) -> dict:
        data = asdict(self)
        data["quarantine"] = str(self.quarantine) if self.quarantine else None
        return data


def check_graph(
    config: GraphConfig, repair: bool = False, restore: int | None = None
) -> CheckReport:
    """Verify the graph under ``config``; ``repair`` mends it, ``restore`` first puts back
    ``backups/graph-<restore>.sqlite`` (undoing the writes after it)."""
    report = CheckReport()
    quarantine = Quarantine(config.data_dir) if repair or restore is not None else None
    with writer_lock(config.data_dir) if quarantine else nullcontext():
        store_dir = config.store_dir
        report.backups = [_describe(p) for p in backups.backups(store_dir)]
        if restore is not None:
            _restore(store_dir, _chosen_backup(store_dir, restore), quarantine, report)
        if _check_metadata(store_dir, report, quarantine):
            GraphStore(store_dir).close()  # the schema, also of a graph left empty
            _check_contents(store_dir, report, quarantine)
            if quarantine is None and report.findings:
                report.notes.append("the retrieval index is compared once the graph is sound")
            else:
                _check_index(config, report, quarantine)
        if quarantine is not None and quarantine.used:
            quarantine.note([asdict(f) for f in report.findings])
            report.quarantine = quarantine.dir
        report.repaired = quarantine is not None
    return report


# -- graph.sqlite ------------------------------------------------------------------------


def _check_metadata(store_dir: Path, report: CheckReport, quarantine: Quarantine | None) -> bool:
    """Report an unusable graph.sqlite (restoring it when repairing); True when usable."""
    db_path = store_dir / DB_NAME
    segments = segment_files(store_dir / "segments")
    if not db_path.exists() or db_path.stat().st_size == 0:
        if not segments:
            report.notes.append(f"no graph at {store_dir} yet")
            return False
        problem = f"is missing or empty, but {len(segments)} segment files are there"
    else:
        problem = metadata_problem(db_path)
        if problem is None and segments and not _registered(db_path):
            problem = f"registers none of the {len(segments)} segment files"
    if problem is None:
        return True
    good = newest_good_backup(store_dir)
    if good is not None:
        action = f"restore {_describe(good)}"
    else:
        action = (
            "no good backup: quarantine it and the segment files, leaving an empty graph "
            "(then `diffgraph graph import --replace` an export, or crawl again)"
        )
    report.add(db_path, problem, action)
    if quarantine is None:
        return False
    if good is not None:
        _restore(store_dir, good, quarantine, None)
    else:
        _quarantine_metadata(store_dir, quarantine)
        for path in segments:
            quarantine.move(path, "segments")
    return True


def metadata_problem(path: Path) -> str | None:
    """What makes a graph.sqlite (or a backup of one) unusable, or None."""
    try:
        with closing(sqlite3.connect(path)) as db:
            result = db.execute("PRAGMA quick_check").fetchall()
            if result != [("ok",)]:
                return f"failed SQLite's integrity check: {result[0][0]}"
            found = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = [t for t in TABLES if t not in found]
            if missing:
                return f"lacks the tables {', '.join(missing)}"
            problem = meta_problem(db)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if problem is None and version and int(version[0]) != SCHEMA_VERSION:
                problem = f"has schema version {version[0]}, this DiffGraph reads {SCHEMA_VERSION}"
            return problem
    except sqlite3.Error as exc:
        return f"unreadable: {exc}"


def newest_good_backup(store_dir: Path) -> Path | None:
    """The newest backup that is intact and whose segments are all there and readable."""
    for path in reversed(backups.backups(store_dir)):
        if backup_problem(path, store_dir / "segments") is None:
            return path
    return None


def backup_problem(path: Path, segment_dir: Path) -> str | None:
    problem = metadata_problem(path)
    if problem:
        return problem
    with closing(sqlite3.connect(path)) as db:
        dim, metrics = _shape(db)
        names = [r[0] for r in db.execute("SELECT name FROM segments ORDER BY seq")]
    for name in names:
        try:
            if any(m.any() for m in nonfinite_rows(_load(segment_dir / name, dim, metrics))):
                return f"its segment {name} holds NaN or infinite values"
        except (ValueError, FileNotFoundError) as exc:
            return f"its segment {name} is {exc}"
    return None


def _chosen_backup(store_dir: Path, number: int) -> Path:
    path = backups.backup_dir(store_dir) / f"graph-{number}.sqlite"
    if not path.is_file():
        listed = ", ".join(p.stem for p in backups.backups(store_dir)) or "none"
        raise GraphError(f"there is no backup {path} (backups: {listed})")
    problem = backup_problem(path, store_dir / "segments")
    if problem:
        raise GraphError(f"backup {path} cannot be restored: {problem}; choose another")
    return path


def _restore(
    store_dir: Path, backup: Path, quarantine: Quarantine, report: CheckReport | None
) -> None:
    """Put ``backup`` in place of graph.sqlite, whose files go to the quarantine."""
    if report is not None:
        report.add(store_dir / DB_NAME, "replaced on request", f"restore {_describe(backup)}")
    _quarantine_metadata(store_dir, quarantine)
    tmp = store_dir / f".{DB_NAME}.restoring"
    shutil.copyfile(backup, tmp)
    os.replace(tmp, store_dir / DB_NAME)


def _quarantine_metadata(store_dir: Path, quarantine: Quarantine) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = store_dir / f"{DB_NAME}{suffix}"
        if path.exists():
            quarantine.move(path)


def _describe(backup: Path) -> str:
    try:
        with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as db:
            revision = db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
    except (sqlite3.Error, TypeError):
        return f"{backup} (unreadable)"
    return f"{backup} (revision {revision})"


def _registered(db_path: Path) -> bool:
    with closing(sqlite3.connect(db_path)) as db:
        return db.execute("SELECT 1 FROM segments LIMIT 1").fetchone() is not None


def _shape(db: sqlite3.Connection) -> tuple[int | None, list[str]]:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    dim = int(meta["embedding_dim"]) if meta.get("embedding_dim") else None
    return dim, json.loads(meta.get("metric_names") or "[]")


def _load(path: Path, dim: int | None, metrics: list[str]) -> Segment:
    if not path.exists():
        raise FileNotFoundError("missing")
    segment = read_segment(path)
    check_segment(segment, dim, metrics)
    return segment


# -- segments and records ---------------------------------------------------------------


@dataclass
class _Plan:
    """What repairing the contents changes, in one transaction."""

    drop: list[str] = field(default_factory=list)  # segment registrations
    rewrite: dict[str, Segment] = field(default_factory=dict)  # old name -> cleaned segment
    rows: list[tuple[str, dict]] = field(default_factory=list)  # (table, row) to quarantine
    columns: list[tuple[str, str, str, str]] = field(default_factory=list)  # kind, base, status, id
    strays: list[Path] = field(default_factory=list)  # unregistered files

    def __bool__(self) -> bool:
        return bool(self.drop or self.rewrite or self.rows or self.columns or self.strays)


def _check_contents(store_dir: Path, report: CheckReport, quarantine: Quarantine | None) -> None:
    segment_dir = store_dir / "segments"
    plan = _Plan()
    with closing(sqlite3.connect(store_dir / DB_NAME, isolation_level=None)) as db:
        db.row_factory = sqlite3.Row
        embedded = _check_segments(db, segment_dir, report, plan)
        _check_experts(db, embedded[0], report, plan)
        _check_refs(db, embedded[1], report, plan)
        registered = {r["name"] for r in db.execute("SELECT name FROM segments")}
        keep = registered | backups.backed_up_segments(store_dir)
        for path in sorted(segment_dir.iterdir()):
            if path.name not in keep:
                report.add(
                    path,
                    "is registered nowhere (left by an interrupted or undone write)",
                    "quarantine it",
                )
                plan.strays.append(path)
        if quarantine is not None and plan:
            _apply(db, store_dir, plan, quarantine)


def _check_segments(
    db: sqlite3.Connection, segment_dir: Path, report: CheckReport, plan: _Plan
) -> tuple[set[int], set[int]]:
    """Check every registered segment; return the expert and reference seqs they embed."""
    dim, metrics = _shape(db)
    experts: set[int] = set()
    refs: set[int] = set()
    for row in db.execute("SELECT name FROM segments ORDER BY seq").fetchall():
        path = segment_dir / row["name"]
        try:
            segment = _load(path, dim, metrics)
        except FileNotFoundError:
            report.add(path, "is registered but missing", "drop its registration")
            plan.drop.append(path.name)
            continue
        except ValueError as exc:
            report.add(path, f"is damaged: {exc}", "quarantine it")
            plan.drop.append(path.name)
            continue
        masks = nonfinite_rows(segment)
        bad = [int(m.sum()) for m in masks]
        if any(bad):
            report.add(
                path,
                f"holds NaN or infinite values ({bad[0]} expert and {bad[1]} reference "
                f"embeddings, {bad[2]} calibration scores)",
                "rewrite it without those rows (the old file is quarantined)",
            )
            segment = plan.rewrite[path.name] = without_rows(segment, masks)
        experts.update(segment.expert_seq.tolist())
        refs.update(segment.ref_seq.tolist())
    return experts, refs


# table: (what one of its rows is, what quarantining a row advises)
_ROWS = {
    "experts": (
        "expert",
        "quarantine the record (re-add the expert with `diffgraph graph add-expert`)",
    ),
    "refs": (
        "reference prompt",
        "quarantine it (add it again with `diffgraph graph add-ref-prompts`)",
    ),
}
_UNEMBEDDED = "has no embedding in any readable segment"


def _quarantine_row(
    report: CheckReport, plan: _Plan, table: str, row: sqlite3.Row, problem: str
) -> None:
    """Report ``problem`` with ``row`` of ``table`` and plan to quarantine the row."""
    name, action = _ROWS[table]
    report.add(f"{name} {row['id']!r}", problem, action)
    plan.rows.append((table, dict(row)))


def _check_experts(
    db: sqlite3.Connection, embedded: set[int], report: CheckReport, plan: _Plan
) -> None:
    for row in db.execute("SELECT * FROM experts ORDER BY seq").fetchall():
        try:
            expert = parse_expert(row["id"], row["record"])
        except UnreadableRecordError as exc:
            _quarantine_row(report, plan, "experts", row, f"has a damaged record ({exc.reason})")
            continue
        columns = (expert.kind.value, expert.base.value, expert.status.value)
        if expert.id != row["id"]:
            _quarantine_row(report, plan, "experts", row, f"holds the record of {expert.id!r}")
        elif row["seq"] not in embedded:
            _quarantine_row(report, plan, "experts", row, _UNEMBEDDED)
        elif (row["kind"], row["base"], row["status"]) != columns:
            what, problem = f"expert {row['id']!r}", "has columns that disagree with its record"
            report.add(what, problem, "rewrite the columns")
            plan.columns.append((*columns, expert.id))


def _check_refs(
    db: sqlite3.Connection, embedded: set[int], report: CheckReport, plan: _Plan
) -> None:
    for row in db.execute("SELECT * FROM refs ORDER BY seq").fetchall():
        try:
            parse_ref(row["id"], row["text"])
        except UnreadableRecordError as exc:
            _quarantine_row(report, plan, "refs", row, f"is damaged ({exc.reason})")
            continue
        if row["seq"] not in embedded:
            _quarantine_row(report, plan, "refs", row, _UNEMBEDDED)


def _apply(db: sqlite3.Connection, store_dir: Path, plan: _Plan, quarantine: Quarantine) -> None:
    """Carry out ``plan`` in one transaction, after backing up the metadata."""
    segment_dir = store_dir / "segments"
    live = {r["name"] for r in db.execute("SELECT name FROM segments")}
    if live:
        backups.take_backup(db, store_dir)
        backups.prune(store_dir, segment_dir, live)
    written: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("DELETE FROM segments WHERE name = ?", [(n,) for n in plan.drop])
        for old, segment in plan.rewrite.items():
            written.append(write_segment(segment_dir, segment))
            db.execute(
                "UPDATE segments SET name = ?, nbytes = ? WHERE name = ?",
                (written[-1], segment.nbytes, old),
            )
        for table, row in plan.rows:
            quarantine.record(table, row)
            db.execute(f"DELETE FROM {table} WHERE seq = ?", (row["seq"],))
        db.executemany(
            "UPDATE experts SET kind = ?, base = ?, status = ? WHERE id = ?", plan.columns
        )
        registered = {r["name"] for r in db.execute("SELECT name FROM segments")}
        for path in plan.strays:  # under the write lock no write is half done
            if path.name not in registered:  # nor did one commit since the check
                quarantine.move(path, "segments")
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        for name in written:
            (segment_dir / name).unlink(missing_ok=True)
        raise
    for name in [*plan.drop, *plan.rewrite]:
        if (segment_dir / name).exists():
            quarantine.move(segment_dir / name, "segments")


# -- retrieval index --------------------------------------------------------------------


def _check_index(config: GraphConfig, report: CheckReport, quarantine: Quarantine | None) -> None:
    from chromadb.api.client import SharedSystemClient

    from graph.index import ChromaIndex, make_client
    from graph.universal import UniversalGraph

    where = config.chroma_url or config.chroma_dir
    if not config.chroma_url and not config.chroma_dir.exists():
        report.notes.append(f"no retrieval index at {where} yet (built on first use)")
        return
    with GraphStore(config.store_dir) as store:
        try:
            client = make_client(config.chroma_dir, config.chroma_url)
            index = ChromaIndex(client, config.collection, store, private=not config.chroma_url)
            found = index.entries()
        except Exception as exc:  # Chroma fails in many ways: its SQLite, Rust core, network
            action = "check the server" if config.chroma_url else "quarantine it and rebuild it"
            report.add(where, f"is unreadable ({type(exc).__name__}: {exc})", action)
            if quarantine is None or config.chroma_url:
                return
            quarantine.move(config.chroma_dir)
            # Chroma caches one client system per folder, even a broken one: a new client
            # must open the new folder (this is a CLI process; no other client is in use)
            SharedSystemClient.clear_system_cache()
        else:
            expected = _active_partitions(store)
            missing = expected.keys() - found.keys()
            extra = found.keys() - expected.keys()
            moved = [i for i in expected.keys() & found.keys() if expected[i] != found[i]]
            if not (missing or extra or moved):
                return
            report.add(
                where,
                f"disagrees with the graph ({len(missing)} experts missing, {len(extra)} "
                f"extra, {len(moved)} in the wrong collection)",
                "rebuild it from the graph",
            )
            if quarantine is None:
                return
    with UniversalGraph(config) as graph:
        graph.index.rebuild()


def _active_partitions(store: GraphStore) -> dict[str, tuple[ExpertKind, BaseFamily]]:
    arrays = store.arrays()
    kinds = {k.value: k for k in ExpertKind}
    bases = {b.value: b for b in BaseFamily}
    return {
        expert_id: (kinds[kind], bases[base])
        for expert_id, kind, base, status in zip(
            arrays.expert_ids,
            arrays.expert_kind,
            arrays.expert_base,
            arrays.expert_status,
            strict=True,
        )
        if status == ExpertStatus.ACTIVE.value and kind in kinds and base in bases
    }
