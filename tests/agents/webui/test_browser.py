"""The web UI served for real and driven in Debian's chromium: a prompt draws images with
their experts, pin / ban / the slider change the recipe, exports download valid files,
compare draws two plans side by side, the graph browser finds an expert and shows its
calibration chart and samples, a crawl runs live, stops and resumes, the traces page lists
runs, opens a timeline and sums them up, bad input shows a message, tabs queue, cancel,
the token."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open

from tests.agents.webui.conftest import free_port
from tests.support.browser import needs_chromium

pytestmark = [needs_chromium, pytest.mark.timeout(2400)]  # slow on a loaded CPU
PROMPT = "a watercolor painting of a castle"
REF_PROMPTS = ["a castle on a hill at dawn", "a red dragon over the sea", "a quiet forest path"]
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


def rows(page, elem: str) -> list[list[str]]:
    """The cells of a table in the page (its grid's rows shown), one list per row."""
    return page.locator(f"#{elem} [role=row]:has([role=gridcell])").evaluate_all(
        "rows => rows.map(r => Array.from(r.querySelectorAll('[role=gridcell]'),"
        " c => c.innerText.trim()))"
    )


def containing(text: str) -> re.Pattern:
    """A value holding ``text``, for ``to_have_value``."""
    return re.compile(re.escape(text))


def choose(page, elem: str, value: str) -> None:
    """Pick ``value`` in a dropdown of the page."""
    page.locator(f"#{elem} input").click()
    page.get_by_role("option", name=value, exact=True).click()


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


def test_compare_two_plans_on_the_same_seed(page, served):
    generate(page, seed=4)
    expect(page.locator("#gallery img").first).to_be_visible()
    choose(page, "compare-planner", "random")
    page.locator("#compare").click()
    status = page.locator("#compare-status")
    expect(status).to_contain_text("right planner random")
    planner = served.service.pipeline.planner.name  # equal weights: no trained planner here
    expect(status).to_contain_text(f"seed 4: left planner {planner}")
    expect(page.locator("#compare-a img").first).to_be_visible()
    expect(page.locator("#compare-b img").first).to_be_visible()
    left = {r[1]: r for r in rows(page, "compare-a-df") if r[0] == "peft"}
    right = {r[1]: r for r in rows(page, "compare-b-df") if r[0] == "peft"}
    assert "lora-watercolor" in left and left.keys() == right.keys()  # the same experts
    assert [r[3] for r in left.values()] != [r[3] for r in right.values()]  # other plans
    shown = {r[1]: r[3] for r in rows(page, "experts")}
    assert {k: r[3] for k, r in left.items()} == {k: shown[k] for k in left}  # the last image


def test_an_experts_page_shows_its_calibration_chart_and_samples(
    scratch_page, scratch, tiny_sd15_files, tmp_path
):
    from PIL import Image

    from tools.calibration.calibrate import calibrate
    from tools.calibration.executor import LocalExecutor
    from tools.calibration.tasks import SamplingSpec
    from tools.calibration.worker import WorkerSpec
    from tools.generation.loading import BaseFamily
    from tools.settings import ScorerSettings
    from tools.tiny.clip import save_tiny_scorer_weights

    page, graph = scratch_page, scratch.service.graph
    spec = WorkerSpec(
        base_model=tiny_sd15_files.folder,
        device="cpu",
        scorers=ScorerSettings(**save_tiny_scorer_weights(tmp_path)).model_dump(),
        sampling=SamplingSpec(images_per_prompt=1, steps=2, size=64),
    )
    castle = graph.expert("lora-castle")
    report = calibrate(graph, [castle], LocalExecutor(spec), BaseFamily.SD15, REF_PROMPTS)
    assert report.calibrated == {"lora-castle": len(REF_PROMPTS)}
    files = list(scratch.service.expert_page("lora-castle").samples)
    assert sorted(f.prompt for f in files) == sorted(REF_PROMPTS)
    for sample in files:
        assert sample.path.is_relative_to(scratch.data / "samples")
        with Image.open(sample.path) as image:
            assert image.format == "PNG" and image.size == (64, 64)

    page.get_by_role("tab", name="Graph").click()
    page.locator("#graph-query textarea, #graph-query input").first.fill("castles on hills")
    page.locator("#graph-search").click()
    expect(page.locator("#graph-results")).to_contain_text("lora-castle")
    page.locator("#graph-open").click()
    expert = page.locator("#expert-page")
    expect(expert).to_contain_text("3 reference prompts scored · 3 sample images")
    gallery = page.locator("#calibration-samples")
    expect(gallery.locator("img")).to_have_count(3)
    for prompt in REF_PROMPTS:
        expect(gallery).to_contain_text(prompt)  # each image captioned with its prompt
    chart = page.locator("#calibration")
    for text in ("clip_score", "aesthetic", REF_PROMPTS[0]):
        expect(chart).to_contain_text(text)  # the bars' legend and axis
    shoot(page, "expert")

    pick = page.locator("#graph-expert input")
    pick.fill("lora-anime")
    pick.press("Enter")
    page.locator("#graph-open").click()
    expect(expert).to_contain_text("Lora Anime")
    expect(expert).to_contain_text("0 reference prompts scored · no sample images")
    expect(gallery.locator("img")).to_have_count(0)


def test_a_crawl_runs_live_stops_and_resumes(
    scratch_page, scratch, chat_template, tmp_path, monkeypatch
):
    from agents.webui.crawls import CrawlJob

    page = scratch_page
    loras = tmp_path / "webui" / "models" / "Lora"  # A1111's layout
    loras.mkdir(parents=True)
    for path in sorted((chat_template.parent / "experts").glob("lora-*.safetensors")):
        shutil.copy(path, loras / path.name)
    assert len(list(loras.iterdir())) == 5
    reached, gate = threading.Event(), threading.Event()  # the crawl waits after one item
    update = CrawlJob._update

    def held(job, node, values):
        if node == "finish_item" and not gate.is_set():
            reached.set()
            gate.wait(600)
        update(job, node, values)

    monkeypatch.setattr(CrawlJob, "_update", held)

    page.get_by_role("tab", name="Crawl").click()
    choose(page, "crawl-source", "local")
    page.locator("#crawl-path textarea, #crawl-path input").first.fill(str(loras.parent.parent))
    page.locator("#crawl-max input").fill("4")  # a budget of 4 experts of the 5 files
    page.locator("#crawl-budget textarea, #crawl-budget input").first.fill("10m")
    page.locator("#crawl-calibrate input").uncheck()
    page.locator("#crawl-start").click()
    progress, log = page.locator("#crawl-progress"), page.locator("#crawl-log textarea")
    wait_until(page, reached.is_set, "the crawl registered its first item")
    # the page follows the crawl by itself while it runs (nothing clicked since Start)
    expect(log).to_have_value(containing("discovered 4 candidates"))
    expect(progress).to_contain_text("running · register · 0/4 candidates")

    page.locator("#crawl-stop").click()
    expect(progress).to_contain_text("stopping · register")
    gate.set()
    expect(progress).to_contain_text("stopped · finish item · 1/4 candidates")
    expect(log).to_have_value(containing("stopped: start the same crawl again to resume it"))
    assert "registered" in log.input_value()  # the first item's line

    page.locator("#crawl-start").click()  # the same settings resume the session
    expect(progress).to_contain_text("finished")
    expect(log).to_have_value(containing("finished: registered"))
    expect(log).to_have_value(containing("stopped by max experts (4)"))
    shoot(page, "crawl")
    local = [e for e in scratch.service.graph.store.experts() if e.id.startswith("local-")]
    assert len(local) == 4  # each file once, over the two runs


def test_traces_list_runs_open_a_timeline_and_sum_them_up(page, served):
    from agents.webui import traces
    from agents.webui.service import GenerateForm
    from tools.tracing import LLMCall, TraceWriter

    service = served.service
    service.generate(service.new_tab(), PROMPT, GenerateForm(seed=2))  # chat and selection runs
    with TraceWriter(service.settings.traces_dir, "selection") as writer:  # an LLM-backed run
        writer.run_start({"prompt": PROMPT})
        time.sleep(0.8125)  # events are stamped when they end, as a real run's are
        call = LLMCall(
            model="qwen2.5:14b-instruct",
            schema="SelectionReply",
            latency_ms=812.5,
            prompt_tokens=120,
            completion_tokens=30,
            valid=True,
        )
        writer.event("llm_call", "interpret", llm=call, latency_ms=812.5, mode="llm")
        time.sleep(0.0455)
        writer.tool_call("retrieve", "search_experts", {"q": PROMPT}, ["lora-castle"], 41.0)
        writer.node("retrieve", latency_ms=45.5)
        writer.run_end({"prompt": PROMPT, "checkpoints": [], "loras": []}, mode="llm")
    recorded = f"selection/{writer.run_id}"

    page.get_by_role("tab", name="Traces").click()
    page.locator("#traces-refresh").click()
    runs = page.locator("#runs")
    for agent in ("chat", "selection", recorded):
        expect(runs).to_contain_text(agent)
    listed = {r[0]: r for r in rows(page, "runs")}
    assert listed[recorded][4:] == ["done", "llm", "1", "1"]  # status, mode, LLM and tool calls

    pick = page.locator("#run input")
    real = next(r[0] for r in traces.run_rows(service.settings.traces_dir) if r[1] == "chat")
    pick.fill(real)
    pick.press("Enter")
    page.locator("#open-run").click()
    expect(page.locator("#traces-status")).to_contain_text(f"run {real}:")
    events = rows(page, "timeline")
    assert events[0][2] == "run_start" and events[-1][2] == "run_end"
    assert {r[2] for r in events} >= {"node", "tool_call"}

    pick.fill(recorded)
    pick.press("Enter")
    page.locator("#open-run").click()
    expect(page.locator("#traces-status")).to_contain_text(f"run {recorded}: 5 events")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text(
        "LLM qwen2.5:14b-instruct · SelectionReply · 120/30 tokens · valid"
    )
    events = rows(page, "timeline")
    assert [r[2] for r in events] == ["run_start", "llm_call", "tool_call", "node", "run_end"]
    assert [r[1] for r in events[1:4]] == ["812.5", "41", "45.5"]  # latencies (ms)
    assert events[2][3:] == ["retrieve", "tool search_experts"]
    expect(page.locator("#timeline-chart")).to_contain_text("interpret #1")  # a bar per node

    page.locator("#traces-summary").click()
    expect(page.locator("#traces-status")).to_contain_text("runs in")
    agents = {r[0]: r for r in rows(page, "trace-agents")}
    assert {"chat", "selection"} <= agents.keys()
    assert float(agents["selection"][3]) > 0  # LLM calls per run
    expect(page.locator("#trace-nodes")).to_contain_text("interpret")
    shoot(page, "traces")


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
