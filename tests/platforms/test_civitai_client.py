"""The Civitai client against the local demo platform (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import pytest

from graph.records import BaseFamily, ExpertKind
from tools.platforms.errors import NotFoundError, PlatformError


def test_pagination_follows_next_cursor_through_429s(civitai, demo):
    pages = list(civitai.iter_pages(types=("lora", "checkpoint"), limit=7))
    models = [m for p in pages for m in p.models]
    assert len(pages) == 6 and pages[-1].next_cursor is None
    assert len(models) == len({m.id for m in models}) == len(demo.catalogue.models()) == 41
    assert sum(r.status == 429 for r in demo.requests) >= 1
    assert all(m.demo and m.platform == "demo" for m in models)


def test_type_filters(civitai):
    loras = [m for p in civitai.iter_pages(types=("lora",)) for m in p.models]
    checkpoints = [m for p in civitai.iter_pages(types=("checkpoint",)) for m in p.models]
    assert {m.kind for m in loras} == {ExpertKind.PEFT} and len(loras) == 33
    assert {m.kind for m in checkpoints} == {ExpertKind.CKPT} and len(checkpoints) == 8


def test_sorting_and_max_pages(civitai):
    first = next(civitai.iter_pages(sort="Newest", limit=3)).models
    assert [m.latest.published_at for m in first] == sorted(
        (m.latest.published_at for m in first), reverse=True
    )
    assert len(list(civitai.iter_pages(limit=5, max_pages=2))) == 2
    with pytest.raises(PlatformError, match="unknown Civitai sort"):
        civitai.models_page(sort="Best")
    with pytest.raises(PlatformError, match="unknown expert type"):
        civitai.models_page(types=("embedding",))


def test_model_version_and_hash_lookups(civitai, demo):
    watercolor = demo.catalogue.by_slug("watercolor-wash")
    model = civitai.model(str(watercolor.id))
    assert model.name == "Watercolor Wash" and model.homepage_url == f"{demo.url}/models/9001"
    version = model.latest
    assert version.base is BaseFamily.SD15 and version.trained_words == ["wtrclr style"]
    assert version.example_prompts == watercolor.example_prompts
    by_id = civitai.model_version(version.id)
    assert (by_id.id, by_id.kind, by_id.versions[0].id) == (model.id, ExpertKind.PEFT, version.id)
    by_hash = civitai.version_by_hash(version.weight_file().sha256)
    assert by_hash.versions[0].id == version.id
    with pytest.raises(NotFoundError):
        civitai.version_by_hash("0" * 64)


def test_a_removed_model_answers_not_found(civitai, demo):
    demo.catalogue.remove("sunken-ruins")
    with pytest.raises(NotFoundError, match="404"):
        civitai.model("9024")
    listed = {m.id for p in civitai.iter_pages() for m in p.models}
    assert "9024" not in listed and len(listed) == 40


def test_a_new_version_becomes_the_latest(civitai, demo):
    new = demo.catalogue.publish_version("watercolor-wash")
    model = civitai.model("9001")
    assert [v.id for v in model.versions] == [str(new.id), "900101"]
