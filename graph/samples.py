"""Calibration's sample images: one small PNG per expert and reference prompt.

They live beside the graph, ``<data_dir>/samples/<expert>/<reference prompt>.png``, each
name the id made safe for a file system plus a hash of the id (two ids never share a file).
A sample is written when its pair is scored, replacing the one before, and its expert's
folder goes when the expert is removed. The graph keeps scores; the samples only show them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from graph.errors import GraphError

FOLDER = "samples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def safe_name(identifier: str) -> str:
    """``identifier`` as one file-name part: safe characters, then 8 hex of its hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identifier).strip("._")[:80]
    digest = hashlib.sha1(identifier.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def expert_folder(data_dir: Path, expert_id: str) -> Path:
    return Path(data_dir) / FOLDER / safe_name(expert_id)


def sample_path(data_dir: Path, expert_id: str, ref_id: str) -> Path:
    return expert_folder(data_dir, expert_id) / f"{safe_name(ref_id)}.png"


def write_samples(data_dir: Path, expert_id: str, samples: Mapping[str, bytes]) -> list[Path]:
    """Write each ``ref id -> PNG bytes`` of ``expert_id`` atomically (replacing old ones)."""
    written = []
    for ref_id, png in samples.items():
        if not png.startswith(PNG_SIGNATURE):
            raise GraphError(
                f"the calibration sample of {expert_id} for {ref_id} is not a PNG image"
            )
        path = sample_path(data_dir, expert_id, ref_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.write_bytes(png)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        written.append(path)
    return written


def sample_files(data_dir: Path, expert_id: str, ref_ids: Iterable[str]) -> dict[str, Path]:
    """The samples of ``expert_id`` that exist, ``ref id -> path``, in ``ref_ids`` order."""
    paths = {ref_id: sample_path(data_dir, expert_id, ref_id) for ref_id in ref_ids}
    return {ref_id: path for ref_id, path in paths.items() if path.is_file()}


def remove_samples(data_dir: Path, expert_id: str) -> None:
    """Delete every sample of ``expert_id`` (nothing to do when it has none)."""
    shutil.rmtree(expert_folder(data_dir, expert_id), ignore_errors=True)
