"""Immutable ``.npz`` segments holding node features and COO calibration edges.

Each write to the graph adds one small segment; later segments override earlier ones
(last write wins per node, and per edge and metric). A segment is written to a
temporary file, flushed and renamed, so a crash leaves either the whole file or none.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ARRAYS = (
    "expert_seq",
    "expert_x",
    "ref_seq",
    "ref_x",
    "edge_expert_seq",
    "edge_ref_seq",
    "edge_attr",
    "metric_names",
)


@dataclass
class Segment:
    """Arrays of one segment; absent parts are empty."""

    expert_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    expert_x: np.ndarray | None = None
    ref_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ref_x: np.ndarray | None = None
    edge_expert_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    edge_ref_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    edge_attr: np.ndarray | None = None
    metric_names: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        parts = (self.expert_x, self.ref_x, self.edge_attr)
        return sum(a.nbytes for a in parts if a is not None) + self.edge_expert_seq.nbytes * 2


def write_segment(directory: Path, segment: Segment) -> str:
    """Write ``segment`` atomically into ``directory``; return its file name."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.npz"
    tmp = directory / f"tmp-{name}"
    arrays = {
        key: value for key in ARRAYS if (value := getattr(segment, key)) is not None and len(value)
    }
    if "metric_names" in arrays:
        arrays["metric_names"] = np.asarray(segment.metric_names, dtype=str)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return name


def segment_files(directory: Path) -> list[Path]:
    """Segment files in ``directory`` (registered or not), excluding unfinished writes."""
    return sorted(p for p in directory.glob("*.npz") if not p.name.startswith("tmp-"))


def read_segment(path: Path) -> Segment:
    """Load one segment written by :func:`write_segment`; ValueError if it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            kwargs = {key: data[key] for key in ARRAYS if key in data.files}
    except Exception as exc:  # damaged bytes fail in many ways (zip, npy header, zlib, ...)
        raise ValueError(f"unreadable: {type(exc).__name__}: {exc}") from exc
    if "metric_names" in kwargs:
        kwargs["metric_names"] = [str(m) for m in kwargs["metric_names"]]
    return Segment(**kwargs)


def check_segment(segment: Segment, dim: int | None, metric_names: list[str]) -> None:
    """Raise ValueError naming the first inconsistency of a segment read from disk.

    ``dim`` and ``metric_names`` are the graph's embedding width and known metrics. Values
    are checked by :func:`nonfinite_rows`.
    """
    for prefix in ("expert", "ref"):
        seq, x = getattr(segment, f"{prefix}_seq"), getattr(segment, f"{prefix}_x")
        rows = len(seq)
        _int_vector(seq, f"{prefix}_seq")
        if x is None:
            if rows:
                raise ValueError(f"{prefix}_seq has {rows} entries but {prefix}_x is absent")
            continue
        if x.ndim != 2 or x.shape[0] != rows or (dim is not None and x.shape[1] != dim):
            raise ValueError(
                f"{prefix}_x has shape {x.shape}, expected ({rows}, {dim}) for {rows} nodes "
                f"of a {dim}-dimensional graph"
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{prefix}_x holds {x.dtype} values, not floats")
    edges = len(segment.edge_expert_seq)
    _int_vector(segment.edge_expert_seq, "edge_expert_seq")
    _int_vector(segment.edge_ref_seq, "edge_ref_seq")
    unknown = [m for m in segment.metric_names if m not in metric_names]
    if unknown:
        raise ValueError(f"metric {unknown[0]!r} is not one of the graph's metrics")
    attr = segment.edge_attr
    width = len(segment.metric_names)
    shape = (0, width) if attr is None else attr.shape
    if len(segment.edge_ref_seq) != edges or shape != (edges, width):
        raise ValueError(
            f"edge arrays disagree: {edges} expert ends, {len(segment.edge_ref_seq)} "
            f"reference ends, scores of shape {shape} for {width} metrics"
        )
    if attr is not None and not np.issubdtype(attr.dtype, np.floating):
        raise ValueError(f"edge_attr holds {attr.dtype} values, not floats")


def nonfinite_rows(segment: Segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of expert rows and reference rows with a NaN or infinite embedding value, and
    of edges with an infinite score (NaN marks a metric not measured)."""

    def bad(x: np.ndarray | None, rows: int) -> np.ndarray:
        return np.zeros(rows, bool) if x is None else ~np.isfinite(x).all(axis=1)

    attr = segment.edge_attr
    return (
        bad(segment.expert_x, len(segment.expert_seq)),
        bad(segment.ref_x, len(segment.ref_seq)),
        np.zeros(len(segment.edge_expert_seq), bool) if attr is None else np.isinf(attr).any(1),
    )


def without_rows(segment: Segment, masks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Segment:
    """A copy of ``segment`` without the rows ``masks`` (as from :func:`nonfinite_rows`) mark."""
    experts, refs, edges = (~m for m in masks)
    return Segment(
        expert_seq=segment.expert_seq[experts],
        expert_x=None if segment.expert_x is None else segment.expert_x[experts],
        ref_seq=segment.ref_seq[refs],
        ref_x=None if segment.ref_x is None else segment.ref_x[refs],
        edge_expert_seq=segment.edge_expert_seq[edges],
        edge_ref_seq=segment.edge_ref_seq[edges],
        edge_attr=None if segment.edge_attr is None else segment.edge_attr[edges],
        metric_names=segment.metric_names,
    )


def _int_vector(values: np.ndarray, name: str) -> None:
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
        raise ValueError(f"{name} is not a vector of non-negative integers")


def concat(segments: list[Segment], dim: int, metric_names: list[str]) -> Segment:
    """Concatenate segments in order, aligning edge columns to ``metric_names``.

    A single part is returned as is (segments are immutable, so sharing is safe).
    """

    def cat(attr: str, width: int | None) -> np.ndarray:
        parts = [p for s in segments if (p := getattr(s, attr)) is not None and len(p)]
        if len(parts) == 1:
            return parts[0]
        if parts:
            return np.concatenate(parts)
        return np.zeros(0, np.int64) if width is None else np.zeros((0, width), np.float32)

    edge_parts = []
    for s in segments:
        if s.edge_attr is None or not len(s.edge_attr):
            continue
        if s.metric_names == list(metric_names):
            edge_parts.append(s.edge_attr)
            continue
        aligned = np.full((len(s.edge_attr), len(metric_names)), np.nan, np.float32)
        for j, name in enumerate(s.metric_names):
            aligned[:, metric_names.index(name)] = s.edge_attr[:, j]
        edge_parts.append(aligned)
    return Segment(
        expert_seq=cat("expert_seq", None),
        expert_x=cat("expert_x", dim),
        ref_seq=cat("ref_seq", None),
        ref_x=cat("ref_x", dim),
        edge_expert_seq=cat("edge_expert_seq", None),
        edge_ref_seq=cat("edge_ref_seq", None),
        edge_attr=(
            (edge_parts[0] if len(edge_parts) == 1 else np.concatenate(edge_parts))
            if edge_parts
            else np.zeros((0, len(metric_names)), np.float32)
        ),
        metric_names=list(metric_names),
    )


def last_rows(keys: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct key, ordered by key."""
    if not len(keys):
        return np.zeros(0, np.int64)
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    return len(keys) - 1 - first_in_reversed


def merge_edge_scores(keys: np.ndarray, attr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse repeated edge keys: per metric, the last finite value wins.

    Returns the distinct keys (sorted) and their merged score rows.
    """
    if not len(keys):
        return keys, attr
    order = np.argsort(keys, kind="stable")
    keys, attr = keys[order], attr[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    merged = np.full((len(starts), attr.shape[1]), np.nan, np.float32)
    positions = np.arange(len(keys))
    for column in range(attr.shape[1]):
        valid = np.where(np.isfinite(attr[:, column]), positions, -1)
        last = np.maximum.reduceat(valid, starts)
        found = last >= 0
        merged[found, column] = attr[last[found], column]
    return keys[starts], merged
