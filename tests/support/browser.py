"""The skip marker for tests that render pages with Debian's chromium."""

from __future__ import annotations

import pytest

from tools.platforms.homepage import CHROMIUM

NO_CHROMIUM = "Debian chromium is not installed (apt-get install chromium)"

needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file(), reason=NO_CHROMIUM)
