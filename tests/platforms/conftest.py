"""Fixtures of the platform tests: the demo platform with stand-in weight bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tools.platforms.civitai import CivitaiClient
from tools.platforms.demo import DemoPlatform
from tools.platforms.demo.weights import DemoWeights
from tools.platforms.http import HttpPolicy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "platforms"
REAL_PAGE = FIXTURES / "civitai_models_checkpoints_sd15_page1.json"
FAST = HttpPolicy(requests_per_s=1000, backoff_s=0.0, max_retries=5)


def stand_in_bytes(model, version, path: Path) -> None:
    """Seeded random bytes instead of tiny weights (the transport tests need no tensors)."""
    rng = random.Random(version.seed)
    path.write_bytes(rng.randbytes(40_000 + version.seed % 1000))


@pytest.fixture
def demo(tmp_path):
    """The demo platform with stand-in weights, an API key and 429s on every 4th API call."""
    weights = DemoWeights(tmp_path / "demo-cache", make_file=stand_in_bytes)
    with DemoPlatform(weights, api_key="demo-key-0123", throttle_every=4, retry_after_s=0) as p:
        yield p


@pytest.fixture
def civitai(demo):
    from pydantic import SecretStr

    with CivitaiClient(
        demo.url, api_key=SecretStr("demo-key-0123"), policy=FAST, platform="demo"
    ) as client:
        yield client
