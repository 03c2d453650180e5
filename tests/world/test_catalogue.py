"""The world catalogue on the demo platform: ≥ 16 experts of every format, traps, versions."""

from __future__ import annotations

from collections import Counter

from tools.world.catalogue import FIRST_WORLD_ID, WORLD_NOTICE, world_catalogue
from tools.world.experts import ALL_VERSIONS, EXPERTS


def test_catalogue_has_the_experts_the_issue_asks_for():
    models = world_catalogue().models()
    assert len(models) == len(EXPERTS) >= 16
    kinds = Counter(m.type for m in models)
    assert kinds["LORA"] >= 12 and kinds["Checkpoint"] >= 4
    formats = {s.adapter.format for s in EXPERTS if s.adapter is not None}
    assert formats >= {"lora", "locon", "loha", "lokr", "dora", "peft"}
    assert len({s.adapter.rank for s in EXPERTS if s.adapter and s.adapter.format == "lora"}) >= 3
    assert {s.trap for s in EXPERTS} >= {"weak-duplicate", "overtrained", "oversold"}
    assert [m.id for m in models] == list(range(FIRST_WORLD_ID, FIRST_WORLD_ID + len(models)))
    assert all(m.notice == WORLD_NOTICE for m in models)
    assert all(m.trigger_words for m in models if m.type == "LORA")
    versioned = [m for m in models if len(m.versions) > 1]
    assert [m.slug for m in versioned] == ["stripe-field"]
    assert versioned[0].versions[0].name == "v2.0"  # newest first
    assert len({s.file_name for s in ALL_VERSIONS}) == len(ALL_VERSIONS)
