"""Where `diffgraph graph check --repair` moves what is broken: nothing is deleted.

One folder per repair, ``<data dir>/quarantine/<time>/``: moved files keep their names
(segments under ``segments/``, the index under ``chroma/``), removed database rows go to
``records.jsonl`` and the findings to ``findings.json``.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path


class Quarantine:
    """A quarantine folder, made on first use."""

    def __init__(self, data_dir: Path) -> None:
        self.parent = Path(data_dir) / "quarantine"
        self._dir: Path | None = None

    @property
    def used(self) -> bool:
        return self._dir is not None

    @property
    def dir(self) -> Path:
        if self._dir is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            folder, n = self.parent / stamp, 1
            while folder.exists():
                n += 1
                folder = self.parent / f"{stamp}-{n}"
            folder.mkdir(parents=True)
            self._dir = folder
        return self._dir

    def move(self, path: Path, under: str = "") -> Path:
        """Move a file or folder into the quarantine; return where it went."""
        target = self.dir / under / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)
        return target

    def record(self, table: str, row: dict) -> None:
        """Keep a database row that is about to be removed."""
        with open(self.dir / "records.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"table": table, **row}, default=str) + "\n")

    def note(self, findings: list[dict]) -> None:
        (self.dir / "findings.json").write_text(json.dumps(findings, indent=2))
