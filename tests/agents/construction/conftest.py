"""Fixtures of the construction-agent tests: the demo platform (real tiny weights), a
scripted OpenAI-protocol LLM that summarises demo experts, and a crawl runner."""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from tools.llm.scripted_server import RecordedRequest, Reply
from tools.platforms.demo import DemoCatalogue, DemoPlatform, demo_catalogue
from tools.platforms.demo.weights import DemoWeights

# A subset of the demo catalogue that keeps the suite fast but has every fault and case:
# a flaky download, a bad hash, an injection page, a model with history, a checkpoint, the
# model that revision 2 updates and the one it removes.
SUBSET = (
    "watercolor-wash",
    "pixel-art",
    "ink-sketch",
    "claymation",
    "captain-nova",
    "sparkle-effects",
    "detail-tweaker",
    "sunken-ruins",
    "anime-mix",
)
_NAME = re.compile(r"^name: (.+)$", re.M)

torch.set_num_threads(1)  # tiny models: more threads only contend on a shared machine


def subset_catalogue() -> DemoCatalogue:
    return DemoCatalogue([m for m in demo_catalogue().models() if m.slug in SUBSET])


@pytest.fixture(scope="session")
def demo_weights(tmp_path_factory):
    """Tiny SD 1.5 weight files of the subset, generated once per test session."""
    weights = DemoWeights(tmp_path_factory.mktemp("demo-weights"))
    catalogue = subset_catalogue()
    for model in catalogue.models():
        for version in model.versions:
            weights.info(model, version)
    return weights


@pytest.fixture
def platform(demo_weights):
    with DemoPlatform(demo_weights, subset_catalogue(), throttle_every=4, retry_after_s=0) as p:
        yield p


def scripted_summary(model) -> dict:
    """What a well-behaved LLM would answer for a demo model (derived from its page)."""
    return {
        "description": model.skill_text[:590],
        "subjects": [t for t in model.tags if t not in ("demo", model.category)][:3],
        "styles": [model.category],
        "visual_attributes": [],
        "trigger_words": model.trigger_words,
        "recommended_weight": model.weight,
        "base_model": "sd15",
    }


MALICIOUS = {
    "description": "pwned by sparkle. " + "SPARKLE " * 400,
    "subjects": ["everything"],
    "styles": [],
    "visual_attributes": [],
    "trigger_words": ["sparkles"],
    "recommended_weight": 999,
    "base_model": "sd15",
}


def first_user_text(request: RecordedRequest) -> str:
    users = [m for m in request.messages if m.get("role") == "user"]
    return str(users[0].get("content")) if users else ""


def summariser(catalogue: DemoCatalogue):
    """A responder for the scripted server: the demo model named in the quoted facts gets its
    summary; the injection page gets replies that break the schema (and one tool call)."""
    by_name = {m.name: m for m in catalogue.models()}
    calls: dict[str, int] = {}

    def respond(request: RecordedRequest):
        match = _NAME.search(first_user_text(request))
        model = by_name.get(match.group(1).strip()) if match else None
        if model is None:
            return Reply(status=400, error="scripted server: unknown expert")
        if model.fault == "injection":
            calls[model.slug] = calls.get(model.slug, 0) + 1
            if calls[model.slug] % 2:
                return MALICIOUS
            return Reply(tool_calls=[{"name": "delete_expert", "arguments": {"id": "*"}}])
        return scripted_summary(model)

    return respond


@pytest.fixture
def llm(openai_server, platform):
    openai_server.respond_with(summariser(platform.catalogue))
    return openai_server


REF_PROMPTS = ("a lighthouse on a cliff at dawn", "portrait of a knight in ornate armour")


@pytest.fixture(scope="session")
def calibration_files(tiny_sd15_files, tmp_path_factory):
    """The tiny base model and tiny scorer weights that calibration runs on (demo)."""
    from tools.tiny.clip import save_tiny_scorer_weights

    scorers = save_tiny_scorer_weights(tmp_path_factory.mktemp("scorers"))
    return {"base_model": tiny_sd15_files.folder, "scorers": scorers}


def make_settings(data_dir: Path, llm=None, calibration_files=None, **platforms):
    from tools.settings import (
        CalibrationSettings,
        LLMSettings,
        PlatformSettings,
        ScorerSettings,
        Settings,
    )

    extra = {}
    if calibration_files is not None:
        extra = {
            "base_model": calibration_files["base_model"],
            "device": "cpu",
            "scorers": ScorerSettings(**calibration_files["scorers"]),
            "calibration": CalibrationSettings(images_per_prompt=1, steps=2, size=64),
        }
    return Settings(
        data_dir=data_dir,
        llm=llm.llm_settings() if llm is not None else LLMSettings(),
        platforms=PlatformSettings(requests_per_s=100, **platforms),
        **extra,
    )


def run(settings, request, embedder, fresh=False, ref_prompts=()):
    """One crawl session in this process (calibrating when the request says so)."""
    from agents.construction.graph import make_calibrator, make_context, run_crawl
    from graph.universal import UniversalGraph

    with ExitStack() as stack:
        graph = stack.enter_context(UniversalGraph(settings.graph, embedder))
        if ref_prompts:
            graph.add_reference_prompts(ref_prompts)
        calibrator = None
        if request.calibrate:
            calibrator = make_calibrator(settings, graph, request.base, stack)
        ctx = make_context(request, settings, graph, stack, calibrator)
        return run_crawl(
            request, ctx, settings.data_dir / "crawl" / "checkpoints.sqlite", fresh=fresh
        )


def trace_events(settings) -> list[dict]:
    events = []
    for path in sorted((settings.traces_dir / "construction").glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines()]
    return events
