"""The web UI served for real on the chat's tiny graph, and Debian's chromium driving it."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents.chat.conftest import chat_template  # noqa: F401  (the tiny graph)
from tests.support.browser import needs_chromium

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
SIZE = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    service: object
    data: Path
    out: Path


@pytest.fixture(scope="package")
def service_factory(tmp_path_factory, chat_template, tiny_sd15_files, embedder):  # noqa: F811
    """``make() -> WebService`` on a private copy of the tiny graph, 2 sampling steps."""
    from agents.pipeline.context import build_context
    from agents.webui.service import WebService
    from tools.settings import load_settings

    made = []

    def make() -> WebService:
        root = tmp_path_factory.mktemp("webui")
        data = root / "data"
        shutil.copytree(chat_template, data)
        with pytest.MonkeyPatch.context() as mp:
            for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
                mp.delenv(name, raising=False)
            mp.setenv("DIFFGRAPH_DATA_DIR", str(data))
            mp.setenv("DIFFGRAPH_BASE_MODEL", str(tiny_sd15_files.folder))
            mp.setenv("DIFFGRAPH_GENERATION__STEPS", "2")
            mp.chdir(root)
            settings = load_settings(None)
        from graph.universal import UniversalGraph

        graph = UniversalGraph(settings.graph, embedder)
        pipeline = build_context(settings, planner="learned", graph=graph)
        service = WebService(settings, pipeline, root / "out")
        made.append(service)
        return service

    yield make
    for service in made:
        service.pipeline.graph.close()


@contextmanager
def serving(service) -> Iterator[Served]:
    """The web UI of ``service`` served on a free local port for the block."""
    pytest.importorskip("gradio")
    from agents.webui.app import launch

    port = free_port()
    ui = launch(service, "127.0.0.1", port, block=False)
    try:
        yield Served(
            f"http://127.0.0.1:{port}/",
            service,
            service.settings.data_dir,
            service.out_dir,
        )
    finally:
        ui.close()


@pytest.fixture(scope="package")
def served(service_factory):
    """The web UI of one service for the package's tests that leave the graph as it is."""
    with serving(service_factory()) as ui:
        yield ui


@pytest.fixture(scope="package")
def scratch(service_factory):
    """A second web UI, on its own copy of the graph, for the tests that change the graph
    (crawls, calibration): the other tests see the tiny graph as it was made."""
    with serving(service_factory()) as ui:
        yield ui


@pytest.fixture(scope="package")
def browser():
    from playwright.sync_api import sync_playwright

    from tools.platforms.homepage import CHROMIUM

    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def opened(browser, url: str):
    """A new browser tab on the UI at ``url`` (a new chat thread), with downloads allowed."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(url)
    tab.wait_for_selector("#thread textarea, #thread input")
    tab.wait_for_function(
        "() => (document.querySelector('#thread textarea, #thread input') || {}).value"
    )
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def page(browser, served):
    """A new browser tab on the shared UI."""
    with opened(browser, served.url) as tab:
        yield tab


@pytest.fixture
def scratch_page(browser, scratch):
    """A new browser tab on the UI whose graph the test may change."""
    with opened(browser, scratch.url) as tab:
        yield tab


__all__ = ["needs_chromium"]
