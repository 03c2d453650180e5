"""Expert files checked against the SHA-256 the graph registered, before they are merged.

Hashes come from the data dir's hash cache (by path, size and mtime), so a file is read
again only when it changed on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.pipeline.errors import WeightsChangedError
from graph.records import Expert
from tools.platforms.hash_cache import HashCache


def hash_cache(data_dir: Path) -> HashCache:
    """The hash cache of weight files under ``data_dir`` (shared with crawls)."""
    return HashCache(Path(data_dir) / "cache" / "hashes.sqlite")


def verified(experts: Sequence[Expert], data_dir: Path) -> list[Expert]:
    """The experts with ``file.sha256`` set to their file's hash; a file whose hash is not
    the registered one is refused (:class:`WeightsChangedError`)."""
    cache = hash_cache(data_dir)
    try:
        checked = []
        for expert in experts:
            path = Path(expert.file.path)
            digest = cache.sha256(path)
            expected = expert.file.sha256
            if expected and digest != expected:
                raise WeightsChangedError(
                    f"expert {expert.id!r}: {path} has SHA-256 {digest}, but the graph "
                    f"registered {expected}: the file was replaced or damaged since it was "
                    "downloaded; nothing was merged. Fix: restore the registered file "
                    "(re-download it with `diffgraph crawl`), or register the new file as an "
                    f"expert of its own (`diffgraph crawl --source local --path {path.parent}`)"
                )
            weights = expert.file.model_copy(update={"sha256": digest})
            checked.append(expert.model_copy(update={"file": weights}))
        return checked
    finally:
        cache.close()
