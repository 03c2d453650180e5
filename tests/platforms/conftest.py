"""Fixtures of the platform tests: the demo platform with stand-in weight bytes."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from tools.platforms.civitai import CivitaiClient
from tools.platforms.demo import DemoPlatform
from tools.platforms.demo.weights import DemoWeights
from tools.platforms.http import HttpPolicy

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "platforms"
REAL_PAGE = FIXTURES / "civitai_models_checkpoints_sd15_page1.json"
FAST = HttpPolicy(requests_per_s=1000, backoff_s=0.0, max_retries=5)


def safetensors_blob(payload: bytes) -> bytes:
    """A valid safetensors file holding ``payload`` as one U8 tensor."""
    header = {"data": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


def stand_in_bytes(model, version, path: Path) -> None:
    """Seeded random bytes in a safetensors file instead of tiny weights (the transport
    tests need no real tensors)."""
    rng = random.Random(version.seed)
    path.write_bytes(safetensors_blob(rng.randbytes(40_000 + version.seed % 1000)))


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
