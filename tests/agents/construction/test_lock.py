"""One crawl at a time per data directory (an inter-process lock)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.construction.lock import CrawlLockedError, crawl_lock

ROOT = Path(__file__).resolve().parents[3]
HOLDER = """
import sys
from agents.construction.lock import crawl_lock
with crawl_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_crawl_is_refused_with_the_first_ones_pid(tmp_path):
    folder = tmp_path / "data" / "crawl"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(
                CrawlLockedError, match=rf"another crawl is running \(pid {holder.pid}\)"
            ),
            crawl_lock(folder),
        ):
            pass
    finally:
        holder.communicate("\n", timeout=60)
    with crawl_lock(folder):  # released when the first one ends
        assert (folder / "crawl.pid").read_text() != str(holder.pid)
    assert not (folder / "crawl.pid").exists()


def test_the_lock_is_released_after_an_error(tmp_path):
    with pytest.raises(RuntimeError), crawl_lock(tmp_path):
        raise RuntimeError("boom")
    with crawl_lock(tmp_path):
        pass
