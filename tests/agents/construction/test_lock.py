"""One crawl at a time per data directory (an inter-process lock)."""

from __future__ import annotations

import pytest

from agents.construction.lock import CrawlLockedError, crawl_lock
from tests.support.locks import held_elsewhere


def test_a_second_crawl_is_refused_with_the_first_ones_pid(tmp_path):
    folder = tmp_path / "data" / "crawl"
    with (
        held_elsewhere("agents.construction.lock.crawl_lock", folder) as pid,
        pytest.raises(CrawlLockedError, match=rf"another crawl is running \(pid {pid}\)"),
        crawl_lock(folder),
    ):
        pass
    with crawl_lock(folder):  # released when the first one ends
        assert (folder / "crawl.pid").read_text() != str(pid)
    assert not (folder / "crawl.pid").exists()


def test_the_lock_is_released_after_an_error(tmp_path):
    with pytest.raises(RuntimeError), crawl_lock(tmp_path):
        raise RuntimeError("boom")
    with crawl_lock(tmp_path):
        pass
