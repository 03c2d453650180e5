"""The web UI served for real and driven in Debian's chromium: a prompt draws images with
their experts, pin / ban / the slider change the recipe, exports download valid files, the
graph browser finds an expert, bad input shows a message, tabs queue, cancel, the token."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open

from tests.agents.webui.conftest import free_port
from tests.support.browser import needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(2400)]  # slow on a loaded CPU
PROMPT = "a watercolor painting of a castle"
# ``DIFFGRAPH_WEBUI_SCREENSHOTS=docs`` writes the README's screenshots there
SHOTS = os.environ.get("DIFFGRAPH_WEBUI_SCREENSHOTS")


def expect(locator):
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=1_200_000)  # a loaded CPU draws slowly; no timing is asserted
    return _expect(locator)


def shoot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"webui-{name}.png"), full_page=True)


def wait_until(page, condition, what: str) -> None:
    """Wait (browser time, not asserted) until ``condition()`` holds."""
    for _ in range(6000):
        if condition():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"never happened: {what}")


def table(page, elem: str) -> str:
    return page.locator(f"#{elem}").inner_text()


def generate(page, prompt: str = PROMPT, seed: int = 3) -> None:
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#seed input").fill(str(seed))
    for side in ("#width input", "#height input"):
        page.locator(side).fill("64")  # the tiny model draws 64x64 quickly
    page.locator("#generate").click()


def pick_expert(page, expert_id: str) -> None:
    box = page.locator("#steer-expert input")
    box.fill(expert_id)
    box.press("Enter")
    box.blur()


def download(page, elem: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.locator(f"#{elem}").click()
    target = folder / info.value.suggested_filename
    info.value.save_as(target)
    return target


def test_prompt_steer_and_export(page, served, tmp_path):
    generate(page)
    expect(page.locator("#gallery img").first).to_be_visible()
    expect(page.locator("#experts")).to_contain_text("lora-watercolor")
    expect(page.locator("#experts")).to_contain_text("asks for this style")  # why picked
    expect(page.locator("#dropped")).to_contain_text("lora-castle")  # and what was dropped
    expect(page.locator("#recipe")).to_contain_text("seed 3")
    expect(page.locator("#backends")).to_contain_text("DEMO")
    shoot(page, "generate")

    pick_expert(page, "lora-anime")
    page.locator("#pin").click()
    expect(page.locator("#experts")).to_contain_text("pinned by you")
    assert "lora-anime" in table(page, "experts")
    pick_expert(page, "lora-watercolor")
    page.locator("#ban").click()
    expect(page.locator("#dropped")).to_contain_text("banned by you")
    assert "lora-watercolor" not in table(page, "experts")

    pick_expert(page, "lora-anime")
    slider = page.locator("#coefficient input[type=number]")
    slider.fill("0.9")
    slider.press("Enter")
    page.locator("#override").click()
    expect(page.locator("#experts")).to_contain_text("coefficient set by you (0.90)")
    expect(page.locator("#conversation")).to_contain_text("lora-anime=0.90")
    last = served.service.thread(page_tab(page, served)).conversation.last
    assert {e.expert_id: e.coefficient for e in last.recipe.loras} == {
        "lora-anime": pytest.approx(0.9)
    }
    shoot(page, "steer")

    png = download(page, "dl-png", tmp_path)
    with Image.open(png) as image:
        parameters = image.text["parameters"]
    assert "<lora:" in parameters and "Seed: 3" in parameters
    a1111 = download(page, "dl-a1111", tmp_path).read_text(encoding="utf-8")
    assert a1111.strip() == parameters.strip()
    assert page.locator("#a1111 textarea").input_value().strip() == parameters.strip()
    workflow = json.loads(download(page, "dl-comfyui", tmp_path).read_text(encoding="utf-8"))
    assert any(node.get("class_type") == "LoraLoader" for node in workflow.values())
    recipe = json.loads(download(page, "dl-recipe", tmp_path).read_text(encoding="utf-8"))
    assert recipe["seed"] == 3 and [e["expert_id"] for e in recipe["loras"]] == ["lora-anime"]

    page.locator("#build-merged").click()
    expect(page.locator("#export-status")).to_contain_text("merged model written")
    merged = download(page, "dl-merged", tmp_path)
    assert merged.suffix == ".safetensors"
    with safe_open(str(merged), "pt") as model:
        assert len(list(model.keys())) > 10


def page_tab(page, served):
    """The service's tab of the page (its thread id is shown in the page)."""
    from agents.webui.service import Tab

    return Tab(thread=page.locator("#thread textarea, #thread input").first.input_value())


def test_graph_browser_finds_an_expert(page):
    page.get_by_role("tab", name="Graph").click()
    page.locator("#graph-query textarea, #graph-query input").first.fill("castles on hills")
    page.locator("#graph-search").click()
    expect(page.locator("#graph-results")).to_contain_text("lora-castle")
    page.locator("#graph-open").click()
    expect(page.locator("#expert-page")).to_contain_text("Lora Castle")
    expect(page.locator("#expert-page")).to_contain_text("medieval castles on hills")
    shoot(page, "graph")


@pytest.mark.parametrize(
    ("fill", "message"),
    [
        ({"#prompt textarea": "   "}, "the prompt is empty"),
        ({"#prompt textarea": PROMPT, "#width input": "8"}, "width"),
    ],
)
def test_bad_input_shows_a_message(page, fill, message):
    for selector, value in fill.items():
        page.locator(selector).fill(value)
    page.locator("#generate").click()
    expect(page.locator("#status")).to_contain_text("error:")
    expect(page.locator("#status")).to_contain_text(message)
    assert "Traceback" not in page.content()
    assert page.locator("#gallery img").count() == 0


def test_two_tabs_generating_at_once_are_queued(browser, served):
    pages = []
    for _ in range(2):
        context = browser.new_context()
        tab = context.new_page()
        tab.set_default_timeout(120_000)
        tab.goto(served.url)
        expect(tab.locator("#thread textarea, #thread input").first).not_to_have_value("")
        pages.append(tab)
    for i, tab in enumerate(pages):
        generate(tab, f"{PROMPT}, tab {i}", seed=20 + i)
    for i, tab in enumerate(pages):
        expect(tab.locator("#gallery img").first).to_be_visible()
        expect(tab.locator("#recipe")).to_contain_text(f"tab {i}")
        expect(tab.locator("#recipe")).to_contain_text(f"seed {20 + i}")
        tab.context.close()


def test_cancel_leaves_the_thread_as_it_was(page, served):
    service = served.service
    with service._lock:  # another tab's generation is running: this one waits
        generate(page)
        wait_until(page, lambda: service.pending == 1, "the generation is queued")
        page.locator("#cancel").click()
        expect(page.locator("#status")).to_contain_text("cancelled")
    wait_until(page, lambda: service.pending == 0, "the cancelled generation ended")
    conversation = service.thread(page_tab(page, served)).conversation
    assert conversation.turn == 0 and conversation.last is None
    generate(page)  # the next request runs
    expect(page.locator("#gallery img").first).to_be_visible()


def test_the_token_is_asked_for(served):
    """With a token, nothing but the login answers until the token is given."""
    import httpx

    from agents.webui.app import launch

    port = free_port()
    ui = launch(served.service, "127.0.0.1", port, token="s3cret-token", block=False)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            assert client.get("/config").status_code == 401
            wrong = client.post("/login", data={"username": "me", "password": "wrong-token"})
            assert wrong.status_code == 400 and client.get("/config").status_code == 401
            right = client.post("/login", data={"username": "me", "password": "s3cret-token"})
            assert right.status_code == 200
            assert client.get("/config").status_code == 200
    finally:
        ui.close()
