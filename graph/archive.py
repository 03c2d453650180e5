"""Export and import a whole graph as one ``.zip`` archive.

Layout: ``manifest.json`` (format, schema version, counts, metric names),
``experts.jsonl`` and ``refs.jsonl`` (records in row order) and ``graph.npz`` with the
node features and the COO calibration edges (``edge_index`` rows index experts / refs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from graph.errors import ArchiveError
from graph.records import Calibration, Expert, ReferencePrompt
from graph.store import SCHEMA_VERSION, GraphStore

FORMAT = "diffgraph-graph-archive"


@dataclass
class ArchiveContents:
    experts: list[Expert]
    expert_x: np.ndarray
    refs: list[ReferencePrompt]
    ref_x: np.ndarray
    calibrations: list[Calibration]


def export_archive(store: GraphStore, path: Path) -> dict:
    """Write the live graph to ``path`` atomically; return the manifest.

    Damaged records are left out (the store warns about each), with their rows and edges.
    """
    arrays = store.arrays()
    experts = store.experts(ids=arrays.expert_ids, skip_unreadable=True)
    refs = store.reference_prompts()
    expert_rows = _rows(arrays.expert_ids, [e.id for e in experts])
    ref_rows = _rows(arrays.ref_ids, [r.id for r in refs])
    edge_index = np.stack([expert_rows[arrays.edge_index[0]], ref_rows[arrays.edge_index[1]]])
    kept = (edge_index >= 0).all(axis=0)
    manifest = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(),
        "experts": len(experts),
        "reference_prompts": len(refs),
        "calibration_edges": int(kept.sum()),
        "metric_names": arrays.metric_names,
        "embedding_dim": store.embedding_dim,
    }
    npz = io.BytesIO()
    np.savez(
        npz,
        expert_x=arrays.expert_x[expert_rows >= 0],
        ref_x=arrays.ref_x[ref_rows >= 0],
        edge_index=edge_index[:, kept],
        edge_attr=arrays.edge_attr[kept],
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w") as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=2))
            archive.writestr("experts.jsonl", "\n".join(e.model_dump_json() for e in experts))
            archive.writestr("refs.jsonl", "\n".join(r.model_dump_json() for r in refs))
            archive.writestr("graph.npz", npz.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


def read_archive(path: Path) -> ArchiveContents:
    """Parse and fully validate an archive; raise :class:`ArchiveError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            needed = {"manifest.json", "experts.jsonl", "refs.jsonl", "graph.npz"}
            if not needed <= names:
                raise ArchiveError(
                    f"archive {path} lacks {sorted(needed - names)}: expected a file written by "
                    "`diffgraph graph export`"
                )
            manifest = json.loads(archive.read("manifest.json"))
            experts_text = archive.read("experts.jsonl").decode()
            refs_text = archive.read("refs.jsonl").decode()
            with np.load(io.BytesIO(archive.read("graph.npz")), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("expert_x", "ref_x", "edge_index", "edge_attr")}
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError, ValueError, OSError) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"archive {path} is malformed: {exc}") from exc

    if manifest.get("format") != FORMAT:
        raise ArchiveError(
            f"{path}: manifest format is {manifest.get('format')!r}, expected {FORMAT!r}"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ArchiveError(
            f"{path}: schema version {manifest.get('schema_version')}, this DiffGraph reads "
            f"{SCHEMA_VERSION}"
        )
    try:
        experts = [Expert.model_validate_json(line) for line in experts_text.splitlines() if line]
        refs = [
            ReferencePrompt.model_validate_json(line) for line in refs_text.splitlines() if line
        ]
    except ValidationError as exc:
        raise ArchiveError(f"{path}: invalid record: {exc}") from exc

    expert_x, ref_x = arrays["expert_x"], arrays["ref_x"]
    edge_index, edge_attr = arrays["edge_index"], arrays["edge_attr"]
    metric_names = list(manifest.get("metric_names", []))
    _expect(path, "expert_x", expert_x.shape[:1], (len(experts),))
    _expect(path, "ref_x", ref_x.shape[:1], (len(refs),))
    if len(experts) and len(refs) and expert_x.shape[1] != ref_x.shape[1]:
        raise ArchiveError(f"{path}: expert and reference embeddings differ in width")
    _expect(path, "edge_index", edge_index.shape[:1], (2,))
    _expect(path, "edge_attr", edge_attr.shape, (edge_index.shape[1], len(metric_names)))
    if edge_index.size and (
        edge_index.min() < 0
        or edge_index[0].max() >= len(experts)
        or edge_index[1].max() >= len(refs)
    ):
        raise ArchiveError(f"{path}: edge_index points outside the node lists")

    calibrations = []
    for (e, r), row in zip(edge_index.T, edge_attr, strict=True):
        scores = {m: float(v) for m, v in zip(metric_names, row, strict=True) if np.isfinite(v)}
        if scores:
            calibrations.append(
                Calibration(expert_id=experts[e].id, ref_id=refs[r].id, scores=scores)
            )
    return ArchiveContents(experts, expert_x, refs, ref_x, calibrations)


def import_archive(path: Path, store_dir: Path) -> dict:
    """Replace the graph at ``store_dir`` with the archive's; the old one survives failures."""
    contents = read_archive(path)
    store_dir = Path(store_dir)
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=store_dir.parent, prefix=f".{store_dir.name}.import-"))
    try:
        with GraphStore(staging) as fresh:
            fresh.add_reference_prompts(zip(contents.refs, contents.ref_x, strict=True))
            fresh.add_experts(zip(contents.experts, contents.expert_x, strict=True))
            fresh.set_calibrations(contents.calibrations)
            fresh.compact()
            stats = fresh.stats()
        backup = store_dir.with_name(f".{store_dir.name}.replaced")
        shutil.rmtree(backup, ignore_errors=True)
        if store_dir.exists():
            os.replace(store_dir, backup)
        os.replace(staging, store_dir)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats


def _rows(all_ids: list[str], kept_ids: list[str]) -> np.ndarray:
    """Each node's row among the kept ones (-1 when left out); ``kept_ids`` keep the order."""
    kept = set(kept_ids)
    flags = np.asarray([i in kept for i in all_ids], bool)
    rows = np.full(len(all_ids), -1, np.int64)
    rows[flags] = np.arange(int(flags.sum()))
    return rows


def _expect(path: Path, name: str, got: tuple, expected: tuple) -> None:
    if tuple(got) != tuple(expected):
        raise ArchiveError(f"{path}: {name} has shape {tuple(got)}, expected {tuple(expected)}")
