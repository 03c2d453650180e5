"""Crawls without an LLM or a browser, of local folders and of the Hub, and crawl limits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.construction.schemas import CrawlRequest
from graph.records import ExpertKind, ExpertStatus
from graph.universal import UniversalGraph
from tests.agents.construction.conftest import make_settings, run


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path / "data", browser="off")


def test_without_llm_or_browser_the_no_llm_policy_describes_experts(platform, settings, embedder):
    request = CrawlRequest(source="demo", platform_url=platform.url, max_experts=3, calibrate=False)
    report = run(settings, request, embedder)
    assert len(report.registered) == 3 and report.no_llm_summaries == 3
    assert report.stopped_by == "max experts (3)" and not report.listing_complete
    with UniversalGraph(settings.graph, embedder) as graph:
        for expert in graph.experts():
            assert expert.description_origin == "no-llm" and expert.demo
            model = platform.catalogue.model(int(expert.source.model_id))
            assert expert.description.startswith(f"{model.name}: a ")
            assert model.summary in expert.description
            assert expert.trigger_words == model.trigger_words
    assert not any(r.path.startswith("/models/") for r in platform.requests)  # no browser


def test_downloaded_weights_are_found_from_any_working_directory(
    platform, tmp_path, embedder, monkeypatch
):
    """A relative data directory (the default ``.diffgraph``) still stores absolute paths."""
    monkeypatch.chdir(tmp_path)
    settings = make_settings(Path("data"), browser="off")
    request = CrawlRequest(source="demo", platform_url=platform.url, max_experts=1, calibrate=False)
    assert len(run(settings, request, embedder).registered) == 1
    monkeypatch.chdir(tmp_path.parent)
    with UniversalGraph(make_settings(tmp_path / "data").graph, embedder) as graph:
        (expert,) = graph.experts()
        path = Path(expert.file.path)
        assert path.is_absolute() and path.is_relative_to(tmp_path / "data" / "experts")
        assert path.is_file()


def test_limits_of_time_and_download_budget(platform, settings, embedder):
    request = CrawlRequest(
        source="demo", platform_url=platform.url, time_budget_s=1e-6, calibrate=False
    )
    report = run(settings, request, embedder)
    assert report.registered == [] and report.stopped_by == "time budget"
    assert {o.reason for o in report.skipped} == {"time budget"}
    assert len(report.skipped) == len(platform.catalogue.models())
    tiny = CrawlRequest(
        source="demo", platform_url=platform.url, max_download_bytes=1, calibrate=False
    )
    report = run(settings, tiny, embedder, fresh=True)
    assert report.registered == []
    assert {o.reason for o in report.skipped} == {"download budget of 0.00 GB would be exceeded"}


def test_local_folders(platform, demo_weights, tmp_path, embedder):
    settings = make_settings(tmp_path / "data", browser="off", civitai_url=platform.url)
    folder = tmp_path / "webui" / "models" / "Lora"
    folder.mkdir(parents=True)
    copies = {}
    for slug in ("pixel-art", "captain-nova"):
        model = platform.catalogue.by_slug(slug)
        copies[slug] = folder / f"{slug}.safetensors"
        shutil.copy(demo_weights.info(model, model.latest).path, copies[slug])
    request = CrawlRequest(
        source="local", local_paths=[str(tmp_path / "webui")], calibrate=False, lookup=True
    )
    report = run(settings, request, embedder)
    assert len(report.registered) == 2 and report.downloaded_bytes == 0
    with UniversalGraph(settings.graph, embedder) as graph:
        by_name = {e.name: e for e in graph.experts()}
        pixel = by_name["Pixel Art Sprites"]  # found by its hash on the (demo) Civitai API
        assert pixel.id.startswith("local-") and pixel.source.platform == "local"
        assert pixel.file.path == str(copies["pixel-art"])  # used in place, not copied
        assert pixel.trigger_words == ["pixelart"]
    copies["captain-nova"].unlink()
    again = run(settings, request, embedder)
    assert again.registered == [] and again.up_to_date == 1
    assert len(again.deprecated) == 1
    with UniversalGraph(settings.graph, embedder) as graph:
        (gone,) = graph.experts(status=ExpertStatus.DEPRECATED)
        assert gone.name == "Captain Nova (OC)" and "removed upstream" in gone.status_reason


def test_hugging_face_hub(platform, settings, embedder, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the Hub here is 127.0.0.1
    request = CrawlRequest(
        source="huggingface",
        platform_url=platform.hf_url,
        types=["checkpoint"],
        calibrate=False,
    )
    report = run(settings, request, embedder)
    anime = platform.catalogue.by_slug("anime-mix")
    expected = f"hf-{anime.hf_repo}@{platform.hf_sha(anime.latest)[:12]}"
    assert report.registered == [expected] and report.listing_complete
    with UniversalGraph(settings.graph, embedder) as graph:
        expert = graph.expert(expected)
        assert expert.kind is ExpertKind.CKPT and expert.source.platform == "huggingface"
        assert expert.file.sha256 == platform.weights.info(anime, anime.latest).sha256
