"""Parsing real and broken Civitai API pages."""

from __future__ import annotations

import copy
import json

import pytest

from graph.records import BaseFamily, ExpertKind
from tests.platforms.conftest import REAL_PAGE
from tools.platforms.civitai_schema import parse_models_page, parse_version_response
from tools.platforms.errors import MalformedResponseError


@pytest.fixture(scope="module")
def real_page():
    return json.loads(REAL_PAGE.read_text())


def test_the_real_page_parses_completely(real_page):
    page = parse_models_page(real_page, "civitai", "https://civitai.com")
    assert page.skipped == []
    assert len(page.models) == 10
    assert sum(len(m.versions) for m in page.models) == 123
    assert page.next_cursor == "22138|364671|25494"
    assert [m.kind for m in page.models] == [ExpertKind.CKPT] * 10


def test_real_page_fields(real_page):
    page = parse_models_page(real_page, "civitai", "https://civitai.com")
    dreamshaper = next(m for m in page.models if m.name == "DreamShaper")
    assert dreamshaper.id == "4384"
    assert dreamshaper.homepage_url == "https://civitai.com/models/4384"
    assert "fantasy art" in dreamshaper.tags
    assert dreamshaper.license["allow_commercial_use"] == ["Image", "RentCivit", "Rent"]
    latest = dreamshaper.latest
    assert (latest.id, latest.name, latest.base) == ("128713", "8", BaseFamily.SD15)
    weights = latest.weight_file()
    assert weights.name == "dreamshaper_8.safetensors"
    assert weights.sha256 == "879db523c30d3b9017143d56705015e15a2cb5628762c11d086fed9538abd7fd"
    assert weights.autov2 == "879db523c3"
    assert weights.format == "safetensors" and weights.primary
    assert weights.size_bytes == round(
        real_page["items"][1]["modelVersions"][0]["files"][0]["sizeKB"] * 1024
    )
    assert weights.download_url == "https://api.civitai.com/api/download/models/128713"


def test_base_labels_map_to_families(real_page):
    page = parse_models_page(real_page, "civitai", "https://civitai.com")
    labels = {(v.base_model, v.base) for m in page.models for v in m.versions}
    assert ("SD 1.5 LCM", BaseFamily.SD15) in labels
    assert ("SD 1.5 Hyper", BaseFamily.SD15) in labels
    assert ("Other", None) in labels


def test_weight_file_prefers_the_safetensors_model(real_page):
    page = parse_models_page(real_page, "civitai", "https://civitai.com")
    for model in page.models:
        for version in model.versions:
            chosen = version.weight_file()
            if any(f.is_safetensors and f.role in ("Model", "Pruned Model") for f in version.files):
                assert chosen.is_safetensors
            assert chosen is None or chosen.role != "Training Data"


def test_malformed_items_are_skipped_and_reported(real_page):
    data = copy.deepcopy(real_page)
    del data["items"][0]["id"]
    data["items"][1]["modelVersions"][0]["files"][0]["hashes"]["SHA256"] = "not-a-hash"
    data["items"].append("garbage")
    page = parse_models_page(data, "civitai", "https://civitai.com")
    assert len(page.models) == 9
    reasons = {s.item: s.reason for s in page.skipped}
    assert "civitai item #0 (id None)" in reasons and "id" in reasons["civitai item #0 (id None)"]
    assert "civitai model 4384 version 128713" in reasons
    assert "sha256" in reasons["civitai model 4384 version 128713"]
    assert "civitai item #10 (id None)" in reasons
    dreamshaper = next(m for m in page.models if m.id == "4384")
    assert len(dreamshaper.versions) == 30  # the broken version is left out, the rest kept


@pytest.mark.parametrize("body", [[], {"error": "boom"}, {"items": "x"}, "html"])
def test_a_page_of_the_wrong_shape_raises_a_clear_error(body):
    with pytest.raises(MalformedResponseError, match="expected a JSON object with an 'items'"):
        parse_models_page(body, "civitai", "https://civitai.com")


def test_trained_words_are_split_and_deduplicated(real_page):
    version = copy.deepcopy(real_page["items"][0]["modelVersions"][0])
    version["trainedWords"] = ["wtr style, soft light", "soft light", " "]
    version["model"] = {"name": "X", "type": "LORA"}
    model = parse_version_response(version, "civitai", "https://civitai.com")
    assert model.versions[0].trained_words == ["wtr style", "soft light"]
    assert model.kind is ExpertKind.PEFT
    assert model.id == "43331"


def test_version_response_without_model_id_is_rejected(real_page):
    version = copy.deepcopy(real_page["items"][0]["modelVersions"][0])
    del version["modelId"]
    with pytest.raises(MalformedResponseError, match="no modelId"):
        parse_version_response(version, "civitai", "https://civitai.com")
