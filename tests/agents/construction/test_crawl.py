"""End to end: a crawl of the demo platform with real chromium and the real langchain-openai
client against the scripted OpenAI-protocol server."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from agents.construction.schemas import DESCRIPTION_MAX, CrawlRequest
from graph.records import ExpertStatus
from graph.universal import UniversalGraph
from tests.agents.construction.conftest import (
    REF_PROMPTS,
    first_user_text,
    make_settings,
    run,
    scripted_summary,
    subset_catalogue,
    summariser,
    trace_events,
)
from tests.support.browser import needs_chromium
from tools.llm.scripted_server import ScriptedOpenAIServer
from tools.platforms.demo import DemoPlatform

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def first(demo_weights, calibration_files, embedder, tmp_path_factory):
    """One crawl (and calibration) of the whole subset, shared by this module (read-only)."""
    data = tmp_path_factory.mktemp("first") / "data"
    with (
        DemoPlatform(demo_weights, subset_catalogue(), throttle_every=4, retry_after_s=0) as p,
        ScriptedOpenAIServer() as server,
    ):
        server.respond_with(summariser(p.catalogue))
        settings = make_settings(data, server, calibration_files)
        request = CrawlRequest(source="demo", platform_url=p.url, max_experts=20)
        report = run(settings, request, embedder, ref_prompts=REF_PROMPTS)
        yield {
            "report": report,
            "settings": settings,
            "platform": p,
            "server": server,
            "request": request,
        }


def _graph(settings, embedder):
    return UniversalGraph(settings.graph, embedder)


def test_the_catalogue_is_registered(first, embedder):
    report, platform = first["report"], first["platform"]
    catalogue = {m.slug: m for m in platform.catalogue.models()}
    bad = catalogue["claymation"]
    assert report.demo and report.source == "demo" and report.listing_complete
    assert sorted(report.registered) == sorted(
        f"demo-{m.id}-v{m.latest.id}" for m in catalogue.values() if m.slug != "claymation"
    )
    assert [o.item for o in report.failed] == [f"demo-{bad.id}-v{bad.latest.id}"]
    assert report.updated == report.deprecated == [] and report.skipped == []
    with _graph(first["settings"], embedder) as graph:
        experts = {e.source.model_id: e for e in graph.experts()}
        assert len(experts) == len(graph.experts()) == len(catalogue) - 1
        for slug, model in catalogue.items():
            if slug in ("claymation", "sparkle-effects"):
                continue
            expert = experts[str(model.id)]
            assert expert.description == scripted_summary(model)["description"]
            assert expert.description_origin == "llm" and expert.demo
            assert expert.trigger_words == model.trigger_words
            assert expert.recommended_weight == model.weight
            assert expert.source.version_id == str(model.latest.id)
            assert expert.example_prompts == model.example_prompts
            path = Path(expert.file.path)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == expert.file.sha256
        assert experts[str(catalogue["anime-mix"].id)].kind.value == "ckpt"
        assert experts[str(catalogue["anime-mix"].id)].source.version_id == "903502"
        arrays = graph.store.arrays()
        assert len(arrays.ref_ids) == len(REF_PROMPTS)
        assert arrays.metric_names == ["aesthetic", "clip_score"]
        for expert in experts.values():
            assert graph.store.calibrated_pairs(expert.id) == set(arrays.ref_ids)
            samples = graph.samples(expert.id, arrays.ref_ids)  # each pair's first image
            assert list(samples) == list(arrays.ref_ids)
            assert all(p.read_bytes().startswith(b"\x89PNG") for p in samples.values())
        assert report.calibration_edges == len(REF_PROMPTS) * len(experts)
        assert report.calibration_demo  # tiny models and scorers say so
        hits = graph.search("a soft watercolor painting of flowers", k=1, exact=True)
        assert hits[0][0].source.model_id == str(catalogue["watercolor-wash"].id)


def test_homepages_were_rendered_by_the_browser(first):
    report = first["report"]
    server: ScriptedOpenAIServer = first["server"]
    firsts = [first_user_text(r) for r in server.chat_requests]
    for text in firsts:
        assert "rendered homepage" in text
        assert "<<<DATA page" in text and "<<<END page" in text
    watercolor = next(t for t in firsts if "name: Watercolor Wash" in t)
    assert "wet-on-wet washes" in watercolor  # only the page's script adds it
    assert report.llm_summaries == len(report.registered) - 1


def test_the_broken_download_resumed(first):
    platform = first["platform"]
    ink = platform.catalogue.by_slug("ink-sketch")
    downloads = [r for r in platform.requests if r.path == f"/api/download/models/{ink.latest.id}"]
    assert [r.status for r in downloads] == [200, 206]
    assert downloads[1].range.startswith("bytes=") and downloads[1].range != "bytes=0-"


def test_the_bad_hash_is_rejected(first, embedder):
    failed = first["report"].failed[0]
    assert "SHA-256" in failed.reason and "the platform says" in failed.reason
    with _graph(first["settings"], embedder) as graph:
        assert not graph.store.has_expert(failed.item)
    assert not list((first["settings"].data_dir / "experts").glob("demo-9009*/*"))


def test_the_injection_page_changes_nothing_else(first, embedder):
    platform, server = first["platform"], first["server"]
    sparkle = platform.catalogue.by_slug("sparkle-effects")
    with _graph(first["settings"], embedder) as graph:
        expert = graph.expert(f"demo-{sparkle.id}-v{sparkle.latest.id}")
        assert expert.description_origin == "no-llm"  # the LLM's replies were rejected
        assert len(expert.description) <= DESCRIPTION_MAX
        assert "pwned" not in expert.description.lower()
        assert expert.recommended_weight == sparkle.weight
        assert expert.status is ExpertStatus.ACTIVE
        others = [e for e in graph.experts() if e.id != expert.id]
        assert all("pwned" not in e.description.lower() for e in others)
        assert all(e.description_origin == "llm" for e in others)
    for request in server.chat_requests:
        assert "tools" not in request.body  # no tool is ever offered to the model
    events = trace_events(first["settings"])
    fallbacks = [e for e in events if e["event"] == "fallback"]
    assert len(fallbacks) == 1 and fallbacks[0]["node"] == "summarise"


def test_the_run_is_traced_without_secrets(first):
    events = trace_events(first["settings"])
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert events[0]["data"]["demo"] is True
    nodes = {e["node"] for e in events if e["event"] == "node"}
    assert {"discover", "fetch_homepage", "summarise", "embed", "download", "register"} <= nodes
    raw = "\n".join(str(e) for e in events)
    assert "sk-test-scripted" not in raw


def test_a_second_run_adds_versions_and_deprecates_removed_experts(
    first, demo_weights, calibration_files, embedder, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(first["settings"].data_dir, data)
    catalogue = subset_catalogue()
    new = catalogue.publish_version("watercolor-wash")
    removed = catalogue.by_slug("sunken-ruins")
    catalogue.remove("sunken-ruins")
    with (
        DemoPlatform(demo_weights, catalogue, throttle_every=4, retry_after_s=0) as p,
        ScriptedOpenAIServer() as server,
    ):
        server.respond_with(summariser(catalogue))
        settings = make_settings(data, server, calibration_files)
        request = CrawlRequest(source="demo", platform_url=p.url, max_experts=20)
        report = run(settings, request, embedder)
    old_id, new_id = "demo-9001-v900101", f"demo-9001-v{new.id}"
    removed_id = f"demo-{removed.id}-v{removed.latest.id}"
    assert (report.updated, report.deprecated, report.registered) == ([new_id], [removed_id], [])
    assert [o.item for o in report.failed] == ["demo-9009-v900901"]  # still a bad hash
    assert report.up_to_date == len(catalogue.models()) - 2
    assert len(server.chat_requests) == 2  # only the new version (and the bad hash) summarised
    with _graph(settings, embedder) as graph:
        old, fresh = graph.expert(old_id), graph.expert(new_id)
        assert old.status is ExpertStatus.DEPRECATED and old.superseded_by == new_id
        assert fresh.supersedes == old_id and fresh.is_active
        assert [e.id for e in graph.store.history(new_id)] == [old_id, new_id]
        gone = graph.expert(removed_id)
        assert gone.status is ExpertStatus.DEPRECATED
        assert "removed upstream" in gone.status_reason
        active = graph.experts(status=ExpertStatus.ACTIVE)
        assert len(active) == len(catalogue.models()) - 1
        # only the new version was calibrated; nothing else was measured again
        assert report.calibration_edges == len(REF_PROMPTS)
        assert graph.store.calibrated_pairs(new_id) == graph.store.calibrated_pairs(old_id)
        with UniversalGraph(first["settings"].graph, embedder) as before:
            kept = before.store.arrays()
        after = graph.store.arrays()
        assert after.edge_index.shape[1] == kept.edge_index.shape[1] + len(REF_PROMPTS)
