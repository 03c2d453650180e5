"""The demo catalogue and the demo platform's own behaviour."""

from __future__ import annotations

from collections import Counter

import httpx

from tools.platforms.demo import DEMO_NOTICE, demo_catalogue
from tools.platforms.demo.catalogue import REVISION_2_NEW_VERSION, REVISION_2_REMOVED


def test_the_catalogue_covers_the_real_categories_and_says_it_is_demo_data():
    models = demo_catalogue().models()
    assert 38 <= len(models) <= 45
    counts = Counter(m.category for m in models)
    assert set(counts) == {
        "style",
        "character",
        "concept",
        "detail",
        "lighting",
        "quality",
        "checkpoint",
    }
    assert counts["checkpoint"] >= 6 and counts["style"] >= 8
    assert all("demo" in m.tags and DEMO_NOTICE in m.description_html for m in models)
    assert len({m.id for m in models}) == len({m.slug for m in models}) == len(models)
    faults = {m.fault for m in models} - {None}
    assert faults == {"flaky-download", "bad-hash", "injection"}


def test_revision_2_publishes_a_version_and_removes_a_model():
    before, after = demo_catalogue(1), demo_catalogue(2)
    assert len(after.models()) == len(before.models()) - 1
    assert after.by_slug(REVISION_2_NEW_VERSION).latest.name == "v2.0"
    assert REVISION_2_REMOVED not in {m.slug for m in after.models()}


def test_the_homepage_draws_its_text_with_javascript(demo):
    model = demo.catalogue.by_slug("sparkle-effects")
    html = httpx.get(f"{demo.url}/models/{model.id}").text
    assert "IGNORE" not in html.upper() and "<script>" in html and DEMO_NOTICE in html
    assert "ignore all previous instructions" in model.homepage_text


def test_downloads_need_the_api_key_when_one_is_set(demo):
    url = f"{demo.url}/api/download/models/900101"
    assert httpx.get(url).status_code == 401
    ok = httpx.get(url, headers={"Authorization": "Bearer demo-key-0123"})
    assert ok.status_code in (200, 206) and ok.headers["Accept-Ranges"] == "bytes"


def test_range_requests(demo):
    headers = {"Authorization": "Bearer demo-key-0123"}
    url = f"{demo.url}/api/download/models/900101"
    whole = httpx.get(url, headers=headers).content
    tail = httpx.get(url, headers={**headers, "Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == whole[100:]
    assert tail.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
    past = httpx.get(url, headers={**headers, "Range": f"bytes={len(whole)}-"})
    assert past.status_code == 416


def test_every_nth_api_call_is_throttled(demo):
    statuses = [httpx.get(f"{demo.url}/api/v1/models/9001").status_code for _ in range(8)]
    assert statuses == [200, 200, 200, 429, 200, 200, 200, 429]


def test_a_client_hanging_up_prints_no_traceback(demo, capsys):
    for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
        try:
            raise error
        except ConnectionError:
            demo._httpd.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""
    try:
        raise ValueError("a real bug")
    except ValueError:
        demo._httpd.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a real bug" in capsys.readouterr().err
