"""Local crawls are safe: a typo retires nothing, other folders are left alone, a file found
again comes back, look-ups are opt-in and back off once, hashes are cached."""

from __future__ import annotations

import os
import shutil

import pytest
from typer.testing import CliRunner

from agents.construction.schemas import CrawlRequest
from graph.universal import UniversalGraph
from tests.agents.construction.conftest import make_settings, run
from tools.platforms.hash_cache import HashCache


@pytest.fixture
def folders(platform, demo_weights, tmp_path):
    """Two A1111 folders: ``a`` with two LoRAs, ``b`` with one."""
    made = {}
    for name, slugs in (("a", ("pixel-art", "captain-nova")), ("b", ("ink-sketch",))):
        lora_dir = tmp_path / name / "models" / "Lora"
        lora_dir.mkdir(parents=True)
        for slug in slugs:
            model = platform.catalogue.by_slug(slug)
            made[slug] = lora_dir / f"{slug}.safetensors"
            shutil.copy(demo_weights.info(model, model.latest).path, made[slug])
    return made


def _request(*roots, **extra):
    return CrawlRequest(
        source="local", local_paths=[str(r.resolve()) for r in roots], calibrate=False, **extra
    )


def _status(settings, embedder) -> dict[str, tuple[str, str | None]]:
    with UniversalGraph(settings.graph, embedder) as graph:
        return {e.file.path: (e.status.value, e.status_reason) for e in graph.experts()}


@pytest.fixture
def settings(tmp_path, platform):
    return make_settings(tmp_path / "data", browser="off", civitai_url=platform.url)


def test_a_missing_folder_retires_nothing(folders, settings, tmp_path, embedder):
    assert len(run(settings, _request(tmp_path / "a"), embedder).registered) == 2
    report = run(settings, _request(tmp_path / "typo"), embedder)
    assert report.deprecated == [] and not report.listing_complete
    assert any("typo does not exist" in n for n in report.notes)
    assert {s for s, _ in _status(settings, embedder).values()} == {"active"}


def test_the_cli_refuses_a_missing_path(tmp_path, monkeypatch):
    from main import app

    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(
        app, ["crawl", "--source", "local", "--path", str(tmp_path / "typo"), "--no-calibrate"]
    )
    assert result.exit_code == 2
    assert "typo: no such folder" in result.output


def test_a_second_folder_leaves_the_first_alone(folders, settings, tmp_path, embedder):
    run(settings, _request(tmp_path / "a"), embedder)
    second = run(settings, _request(tmp_path / "b"), embedder)
    assert len(second.registered) == 1 and second.deprecated == []
    assert {s for s, _ in _status(settings, embedder).values()} == {"active"}


def test_a_vanished_file_is_retired_and_reactivated_when_found_again(
    folders, settings, tmp_path, embedder
):
    nova = folders["captain-nova"]
    kept = tmp_path / "kept.safetensors"
    shutil.move(nova, kept)
    run(settings, _request(tmp_path / "a", tmp_path / "b"), embedder)  # nova never seen
    shutil.move(kept, nova)
    run(settings, _request(tmp_path / "a"), embedder)
    shutil.move(nova, kept)
    gone = run(settings, _request(tmp_path / "a"), embedder)
    assert len(gone.deprecated) == 1 and gone.up_to_date == 1
    status = _status(settings, embedder)
    assert status[str(nova)][0] == "deprecated" and "removed upstream" in status[str(nova)][1]
    assert status[str(folders["ink-sketch"])][0] == "active"  # not under the crawled root
    # found again, in another folder under the root: active again, at its new place
    moved = tmp_path / "a" / "models" / "Lora" / "sub" / "nova.safetensors"
    moved.parent.mkdir()
    shutil.move(kept, moved)
    back = run(settings, _request(tmp_path / "a"), embedder)
    assert back.reactivated == gone.deprecated and back.registered == []
    assert _status(settings, embedder)[str(moved)] == ("active", None)


def test_graph_enable_brings_an_expert_back(folders, settings, tmp_path, embedder, monkeypatch):
    from main import app

    (expert_id,) = run(settings, _request(tmp_path / "b"), embedder).registered
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(settings.data_dir))
    cli = CliRunner()
    assert cli.invoke(app, ["graph", "deprecate", expert_id]).exit_code == 0
    result = cli.invoke(app, ["graph", "enable", expert_id])
    assert result.exit_code == 0 and f"enabled {expert_id}" in result.output
    with UniversalGraph(settings.graph, embedder) as graph:
        assert graph.expert(expert_id).is_active
        assert [e.id for e, _ in graph.search("ink sketch", k=5)] == [expert_id]
    assert "active already" in cli.invoke(app, ["graph", "enable", expert_id]).output


def test_lookups_are_opt_in(folders, settings, tmp_path, embedder, platform):
    report = run(settings, _request(tmp_path / "b"), embedder)
    assert len(report.registered) == 1
    assert not any("by-hash" in r.path for r in platform.requests)  # nothing sent
    with UniversalGraph(settings.graph, embedder) as graph:
        (expert,) = graph.experts()
        assert expert.name == "ink-sketch"  # described from the file alone


def test_offline_lookups_back_off_once_per_crawl(folders, tmp_path, embedder, monkeypatch):
    from tools.platforms.civitai import CivitaiClient

    calls = []
    original = CivitaiClient.version_by_hash
    monkeypatch.setattr(
        CivitaiClient,
        "version_by_hash",
        lambda self, sha: calls.append(sha) or original(self, sha),
    )
    offline = make_settings(tmp_path / "data", browser="off", civitai_url="http://127.0.0.1:9")
    report = run(offline, _request(tmp_path / "a", lookup=True), embedder)
    assert len(report.registered) == 2 and len(calls) == 1  # one try, then no more
    assert any("look-ups turned off" in n for n in report.notes)


def test_hashes_are_cached_by_path_size_and_mtime(folders, tmp_path):
    path = folders["pixel-art"]
    cache = HashCache(tmp_path / "hashes.sqlite")
    first = cache.sha256(path)
    assert cache.sha256(path) == first and (cache.hits, cache.misses) == (1, 1)
    cache.close()
    again = HashCache(tmp_path / "hashes.sqlite")  # persistent
    assert again.sha256(path) == first and again.hits == 1
    with path.open("ab") as f:
        f.write(b"\0")
    os.utime(path, ns=(1, 1))
    assert again.sha256(path) != first and again.misses == 1
