"""A hostile item fails alone: recorded with its reason, never registered, never fatal."""

from __future__ import annotations

from contextlib import ExitStack
from types import SimpleNamespace

import pytest

from agents.construction import nodes
from agents.construction.graph import make_context, run_crawl
from agents.construction.schemas import CrawlRequest
from agents.construction.tools import weights_folder
from graph.universal import UniversalGraph
from tests.agents.construction.conftest import make_settings, run, subset_catalogue
from tools.platforms.demo import DemoPlatform
from tools.platforms.downloads import DownloadPolicy
from tools.platforms.errors import TimeBudgetError


def _ids(models) -> list[str]:
    return [f"demo-{m.id}-v{m.latest.id}" for m in models]


@pytest.fixture
def hostile(demo_weights):
    """The demo platform whose first listed model redirects to itself and whose second
    serves a login page without a published SHA-256."""
    models = sorted(subset_catalogue().models(), key=lambda m: m.id)
    behaviour = {models[0].latest.id: "redirect-loop", models[1].latest.id: "login-page"}
    with DemoPlatform(
        demo_weights, subset_catalogue(), throttle_every=None, hostile=behaviour
    ) as p:
        yield p, models


def test_hostile_downloads_fail_alone_and_are_not_registered(hostile, tmp_path, embedder):
    platform, models = hostile
    loop, login = _ids(models[:2])
    settings = make_settings(tmp_path / "data", browser="off")
    request = CrawlRequest(source="demo", platform_url=platform.url, calibrate=False, max_experts=4)
    report = run(settings, request, embedder)
    failed = {o.item: o.reason for o in report.failed}
    assert "redirect loop" in failed[loop]
    assert "not the published file" in failed[login]  # declared size: refused unread
    assert loop not in report.registered and login not in report.registered
    assert len(report.registered) + len(failed) == 4
    with UniversalGraph(settings.graph, embedder) as graph:
        assert sorted(e.id for e in graph.experts()) == sorted(report.registered)
    folder = weights_folder(settings.data_dir / "experts", login)
    assert not folder.exists() or list(folder.iterdir()) == []  # the login page was deleted
    again = run(settings, request, embedder)  # the next crawl fails them again, alone
    assert {o.item for o in again.failed} >= {loop, login}


def test_an_unexpected_error_fails_the_item_and_the_crawl_goes_on(platform, tmp_path, embedder):
    settings = make_settings(tmp_path / "data", browser="off")
    request = CrawlRequest(source="demo", platform_url=platform.url, calibrate=False, max_experts=3)
    victim = _ids(sorted(platform.catalogue.models(), key=lambda m: m.id))[1]
    with ExitStack() as stack:
        graph = stack.enter_context(UniversalGraph(settings.graph, embedder))
        ctx = make_context(request, settings, graph, stack)
        embed = graph.embedder.embed_one
        calls = []

        def broken_embed(text):
            calls.append(text)
            if len(calls) == 2:  # the second candidate
                raise RecursionError("maximum recursion depth exceeded")
            return embed(text)

        graph.embedder.embed_one = broken_embed
        report = run_crawl(request, ctx, settings.data_dir / "crawl" / "checkpoints.sqlite")
        graph.embedder.embed_one = embed
    assert [(o.item, o.reason) for o in report.failed] == [
        (victim, "embed: RecursionError: maximum recursion depth exceeded")
    ]
    assert len(report.registered) == 2


def test_the_download_node_passes_the_time_budget_and_skips_when_it_runs_out(tmp_path):
    seen = {}

    def fetch(file, dest, policy):
        seen["deadline"] = policy.deadline
        raise TimeBudgetError("time budget reached while downloading x; the partial file ...")

    model = sorted(subset_catalogue().models(), key=lambda m: m.id)[0]
    request = CrawlRequest(source="demo", platform_url="http://127.0.0.1:1", time_budget_s=60)
    candidate = {"expert_id": "demo-1-v1", "action": "new", "model": _platform_model(model)}
    state = {
        "request": request.model_dump(mode="json"),
        "current": {"candidate": candidate},
        "active_s": 45.0,
    }
    ctx = SimpleNamespace(
        source=SimpleNamespace(fetch=fetch, demo=True),
        weights_dir=tmp_path,
        download=DownloadPolicy(),
        tracer=None,
    )
    update = nodes.download(state, SimpleNamespace(context=ctx))
    assert update["current"]["skip"].startswith("time budget: time budget reached")
    assert seen["deadline"] is not None
    assert nodes.after_download({**state, **update}) == "finish_item"


def _platform_model(model) -> dict:
    from tools.platforms.records import PlatformFile, PlatformModel, PlatformVersion

    file = PlatformFile(name="x.safetensors", download_url="http://127.0.0.1:1/x", primary=True)
    version = PlatformVersion(id=str(model.latest.id), name="v1", base_model="SD 1.5", files=[file])
    return PlatformModel(
        platform="demo", id=str(model.id), name=model.name, type="LORA", versions=[version]
    ).model_dump(mode="json")
