"""Homepages: rendered by real headless Chromium (Playwright), or the API description."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.browser import NO_CHROMIUM, needs_chromium
from tools.platforms.errors import BrowserUnavailableError
from tools.platforms.homepage import (
    CHROMIUM,
    BrowserRenderer,
    HomepageFetcher,
    _site,
    html_to_text,
)


@pytest.fixture(scope="module")
def renderer():
    if not CHROMIUM.is_file():
        pytest.skip(NO_CHROMIUM)
    with BrowserRenderer(CHROMIUM, timeout_s=20) as browser:
        yield browser


def test_html_to_text_drops_markup_and_scripts():
    html = (
        "<p>Soft <b>watercolor</b> &amp; ink.</p><script>alert(1)</script>"
        "<style>p{}</style><ul><li>one</li><li>two</li></ul>"
    )
    assert html_to_text(html) == "Soft watercolor & ink.\none\ntwo"
    assert html_to_text(None) == ""
    assert html_to_text("<p>" + "x" * 50 + "</p>", max_chars=10) == "x" * 10


@needs_chromium
def test_the_browser_sees_text_drawn_by_javascript(renderer, demo):
    model = demo.catalogue.by_slug("watercolor-wash")
    raw = demo.homepage(model)
    assert model.skill_text[:40] not in raw  # not in the HTML: only the script draws it
    page = HomepageFetcher(renderer).fetch(f"{demo.url}/models/{model.id}", model.description_html)
    assert page.origin == "browser" and page.note is None
    assert model.skill_text in page.text
    assert "Trigger words: wtrclr style." in page.text
    assert "DEMO DATA" in page.text


class _Recorder(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, str]]
    seen: ClassVar[list[str]]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = self.pages.get(self.path, "nothing").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def _server(pages: dict[str, str]):
    handler = type("H", (_Recorder,), {"pages": pages, "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", handler.seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@needs_chromium
def test_only_the_pages_own_site_is_fetched(renderer):
    with _server({}) as (other, other_seen):
        page = (
            f"<p>own text</p><img src='/pic.png'><img src='{other}/track.png'>"
            f"<script src='{other}/evil.js'></script>"
            f"<script>fetch('{other}/beacon').catch(() => {{}});"
            "fetch('/data').then(r => r.text()).then(t => document.body.append(t));</script>"
        )
        with _server({"/": page, "/data": "same-origin data"}) as (own, own_seen):
            text = renderer.render(own + "/")
    assert "own text" in text and "same-origin data" in text
    assert other_seen == []
    assert "/pic.png" not in own_seen  # images are never fetched


@needs_chromium
def test_a_missing_page_falls_back_to_the_api_description(renderer, demo):
    page = HomepageFetcher(renderer).fetch(f"{demo.url}/models/1", "<p>From the API.</p>")
    assert page.origin == "api-description" and page.text == "From the API."
    assert "rendering failed" in page.note and "404" in page.note


def test_without_a_browser_the_api_description_is_used_and_said():
    page = HomepageFetcher(None).fetch("https://civitai.com/models/1", "<p>Soft light.</p>")
    assert (page.origin, page.text) == ("api-description", "Soft light.")
    assert "no browser available" in page.note
    empty = HomepageFetcher(None).fetch(None, None)
    assert (empty.origin, empty.text, empty.note) == ("none", "", "no homepage URL")


def test_a_missing_browser_is_a_clear_error(tmp_path):
    with pytest.raises(BrowserUnavailableError, match="apt-get install -y chromium"):
        BrowserRenderer(Path(tmp_path / "no-chromium"))


def test_a_site_is_the_registrable_domain_or_the_exact_origin():
    assert (
        _site("https://civitai.com/models/1")
        == _site("https://api.civitai.com/v1")
        == "civitai.com"
    )
    assert _site("https://evil.example/x") != _site("https://civitai.com/")
    assert _site("http://127.0.0.1:8000/a") == "http://127.0.0.1:8000"
    assert _site("http://127.0.0.1:8000/a") != _site("http://127.0.0.1:9000/a")
