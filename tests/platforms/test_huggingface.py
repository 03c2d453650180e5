"""The Hugging Face client (real huggingface_hub) against the demo platform's Hub endpoints."""

from __future__ import annotations

import pytest

from graph.records import BaseFamily, ExpertKind
from tests.platforms.conftest import FAST
from tools.platforms.downloads import download
from tools.platforms.errors import NotFoundError, PlatformError
from tools.platforms.huggingface import HuggingFaceClient


@pytest.fixture
def hub(demo, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the endpoint is 127.0.0.1
    with HuggingFaceClient(demo.hf_url, policy=FAST, demo=True) as client:
        yield client


def test_adapters_and_finetunes_of_a_base_model(hub, demo):
    repos = list(hub.list_repos(BaseFamily.SD15))
    kinds = dict(repos)
    assert len(repos) == len(kinds) == 41
    assert kinds["diffgraph-demo/watercolor-wash"] == "lora"
    assert kinds["diffgraph-demo/anime-mix"] == "checkpoint"
    assert list(hub.list_repos(BaseFamily.SDXL)) == []
    only_loras = list(hub.list_repos(BaseFamily.SD15, types=("lora",), limit=3))
    assert len(only_loras) == 3 and {t for _, t in only_loras} == {"lora"}


def test_a_repository_becomes_a_one_version_model(hub, demo):
    model = hub.model("diffgraph-demo/watercolor-wash", "lora", BaseFamily.SD15)
    source = demo.catalogue.by_slug("watercolor-wash")
    assert (model.platform, model.kind, model.demo) == ("huggingface", ExpertKind.PEFT, True)
    assert model.homepage_url == f"{demo.hf_url}/diffgraph-demo/watercolor-wash"
    assert model.description.startswith("# Watercolor Wash") and "---" not in model.description
    version = model.latest
    assert version.id == demo.hf_sha(source.latest) and version.base is BaseFamily.SD15
    assert version.trained_words == ["wtrclr style"]
    assert version.example_prompts == source.example_prompts
    (file,) = version.files
    info = demo.weights.info(source, source.latest)
    assert (file.sha256, file.size_bytes, file.primary) == (info.sha256, info.size_bytes, True)
    got = download(
        hub.http, file.download_url, demo.weights.cache_dir.parent / "dl", file.name, file.sha256
    )
    assert got.verified and got.size_bytes == info.size_bytes
    assert "diffusers" in model.tags and not any(":" in t for t in model.tags)


def test_unknown_repositories_and_offline_mode(hub, monkeypatch):
    with pytest.raises(NotFoundError):
        hub.model("diffgraph-demo/missing", "lora", BaseFamily.SD15)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PlatformError, match="HF_HUB_OFFLINE is set"):
        list(hub.list_repos(BaseFamily.SD15))
