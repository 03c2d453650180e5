"""Homepage text of a model: rendered in headless Chromium (Playwright), or the API description.

Pages draw much of their content with JavaScript, so they are rendered in a real browser.
When no browser is available the API's HTML description is converted to text instead, and
the result says so. Page text is untrusted: callers pass it to an LLM only as quoted data.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from tools.platforms.errors import BrowserUnavailableError
from tools.platforms.records import PageText

log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_BLOCKED_RESOURCES = frozenset({"image", "media", "font", "websocket", "eventsource", "manifest"})
_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section",
     "article", "blockquote", "pre", "hr", "table"}
)  # fmt: skip


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str | None, max_chars: int = 20000) -> str:
    """Readable text of an HTML fragment: no tags, scripts or styles; one line per block."""
    if not html:
        return ""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return normalise_text("".join(parser.parts), max_chars)


def normalise_text(text: str, max_chars: int = 20000) -> str:
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)[:max_chars]


class BrowserRenderer:
    """Headless Chromium driven by Playwright on one private worker thread.

    Playwright's sync API must stay on the thread that started it, so every call is handed
    to that thread. A fresh ``--user-data-dir`` is created per renderer and removed on close.
    Only requests to the page's own site are allowed; images, media and fonts are blocked.
    """

    def __init__(
        self, executable: Path = CHROMIUM, timeout_s: float = 20.0, max_chars: int = 20000
    ) -> None:
        if not Path(executable).is_file():
            raise BrowserUnavailableError(
                f"no browser at {executable}: install it with `apt-get install -y chromium` "
                "or set DIFFGRAPH_PLATFORMS__BROWSER=off to use API descriptions"
            )
        self.executable = Path(executable)
        self.timeout_ms = timeout_s * 1000
        self.max_chars = max_chars
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="chromium")
        self._lock = threading.Lock()
        self._state: dict = {}
        try:
            self._pool.submit(self._launch).result()
        except BaseException:
            self._pool.shutdown()
            raise

    def _launch(self) -> None:
        from playwright.sync_api import sync_playwright

        profile = tempfile.mkdtemp(prefix="diffgraph-chromium-")
        self._state["profile"] = profile
        playwright = sync_playwright().start()
        self._state["playwright"] = playwright
        try:
            self._state["context"] = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(self.executable),
                headless=True,
                args=list(CHROMIUM_FLAGS),
                accept_downloads=False,
                java_script_enabled=True,
                service_workers="block",
            )
        except Exception as exc:
            self._shutdown()
            raise BrowserUnavailableError(
                f"could not start {self.executable}: {str(exc).splitlines()[0]}; check the "
                "chromium install or set DIFFGRAPH_PLATFORMS__BROWSER=off"
            ) from exc

    def render(self, url: str) -> str:
        """Visible text of ``url`` after its scripts ran (at most ``max_chars``)."""
        with self._lock:
            return self._pool.submit(self._render, url).result()

    def _render(self, url: str) -> str:
        site = _site(url)
        page = self._state["context"].new_page()

        def gate(route) -> None:
            request = route.request
            if _site(request.url) != site or request.resource_type in _BLOCKED_RESOURCES:
                route.abort()
            else:
                route.continue_()

        try:
            page.route("**/*", gate)
            response = page.goto(url, wait_until="load", timeout=self.timeout_ms)
            if response is not None and response.status >= 400:
                raise BrowserUnavailableError(f"{url} answered HTTP {response.status}")
            try:
                page.wait_for_load_state("networkidle", timeout=min(self.timeout_ms, 5000))
            except Exception:  # busy pages never go idle; what rendered so far is used
                log.debug("%s did not reach network idle", url)
            return normalise_text(page.inner_text("body"), self.max_chars)
        finally:
            page.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.submit(self._shutdown).result()
            self._pool.shutdown()
            self._pool = None

    def _shutdown(self) -> None:
        for key in ("context", "playwright"):
            thing = self._state.pop(key, None)
            if thing is not None:
                try:
                    thing.close() if key == "context" else thing.stop()
                except Exception:  # already gone
                    log.debug("closing %s failed", key, exc_info=True)
        profile = self._state.pop("profile", None)
        if profile:
            shutil.rmtree(profile, ignore_errors=True)

    def __enter__(self) -> BrowserRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _site(url: str) -> str:
    """What a page may load from: its registrable domain (``civitai.com`` covers
    ``api.civitai.com``), or exactly its origin for IP addresses and single-label hosts."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    labels = host.split(".")
    if len(labels) < 2 or labels[-1].isdigit() or ":" in host:
        return f"{parts.scheme}://{parts.netloc}"
    return ".".join(labels[-2:])


class HomepageFetcher:
    """Homepage text from the browser when there is one, else from the API description."""

    def __init__(self, renderer: BrowserRenderer | None, max_chars: int = 20000) -> None:
        self.renderer = renderer
        self.max_chars = max_chars

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()

    def __enter__(self) -> HomepageFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: str | None, description: str | None) -> PageText:
        fallback = html_to_text(description, self.max_chars)
        origin = "api-description" if fallback else "none"
        if url is None or urlsplit(url).scheme not in ("http", "https"):
            return PageText(url=url, text=fallback, origin=origin, note="no homepage URL")
        if self.renderer is None:
            note = "no browser available: used the API description instead of the rendered page"
            return PageText(url=url, text=fallback, origin=origin, note=note)
        try:
            text = self.renderer.render(url)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("rendering %s failed (%s); using the API description", url, reason)
            note = f"rendering failed ({reason[:160]}): used the API description"
            return PageText(url=url, text=fallback, origin=origin, note=note)
        return PageText(url=url, text=text, origin="browser")


def make_fetcher(
    browser: str = "auto",
    executable: Path = CHROMIUM,
    timeout_s: float = 20.0,
    max_chars: int = 20000,
) -> HomepageFetcher:
    """A fetcher with a browser when ``browser`` is 'auto' and one starts; else without."""
    renderer = None
    if browser != "off":
        try:
            renderer = BrowserRenderer(executable, timeout_s, max_chars)
        except BrowserUnavailableError as exc:
            log.warning("%s; homepages fall back to API descriptions", exc)
    return HomepageFetcher(renderer, max_chars)
