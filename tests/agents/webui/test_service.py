"""The web UI's operations without the page: turns, steering, overrides, exports, graph
browser, input checks, cancelling, and two tabs generating at once."""

from __future__ import annotations

import json
import threading

import pytest
from PIL import Image
from pydantic import ValidationError
from safetensors import safe_open

from agents.webui.errors import GenerationCancelled, WebUIError
from agents.webui.service import GenerateForm
from agents.webui.views import expert_markdown
from graph.records import ExpertKind, ExpertStatus

PROMPT = "a watercolor painting of a castle"


@pytest.fixture(scope="module")
def service(service_factory):
    return service_factory()


def merged(view):
    recipe = view.report.conversation.last.recipe
    return {e.expert_id: e for e in recipe.checkpoints + recipe.loras}


def test_prompt_pin_ban_override_and_exports(service):
    tab = service.new_tab()
    form = GenerateForm(seed=3)
    view = service.generate(tab, PROMPT, form)
    assert view.report.generated and view.report.conversation.seed == 3
    first = merged(view)
    assert "lora-watercolor" in first
    assert all(p.is_file() for p in view.report.conversation.last.images)
    picked = {e.id: e.reason for e in view.selection.loras + view.selection.checkpoints}
    assert picked["lora-watercolor"]  # why it was picked

    view = service.steer(tab, "pin", "lora-anime", form)
    assert {"lora-anime", "lora-watercolor"} <= set(merged(view))
    view = service.steer(tab, "ban", "lora-watercolor", form)
    assert "lora-watercolor" not in merged(view) and "lora-anime" in merged(view)
    assert view.report.conversation.banned == ["lora-watercolor"]

    before = merged(view)["lora-anime"].coefficient
    value = 0.9 if abs(before - 0.9) > 0.05 else 0.2
    view = service.override(tab, "lora-anime", value, form)
    assert merged(view)["lora-anime"].coefficient == pytest.approx(value)
    assert tab.overrides == {"lora-anime": value}
    view = service.clear_overrides(tab, form)
    assert merged(view)["lora-anime"].coefficient == pytest.approx(before)
    assert tab.overrides == {}

    files = service.exports(tab)
    with Image.open(files["png"]) as png:
        parameters = png.text["parameters"]
    assert "<lora:" in parameters and "Seed: 3" in parameters
    assert files["a1111"].read_text(encoding="utf-8").strip() == parameters.strip()
    workflow = json.loads(files["comfyui"].read_text(encoding="utf-8"))
    assert any("LoraLoader" in str(node.get("class_type")) for node in workflow.values())
    assert json.loads(files["recipe"].read_text(encoding="utf-8"))["seed"] == 3
    path = service.export_merged(tab)
    assert path.suffix == ".safetensors"
    with safe_open(str(path), "pt") as model:
        assert len(list(model.keys())) > 10


def test_compare_plans_on_the_same_seed(service):
    tab = service.new_tab()
    form = GenerateForm(seed=5)
    view = service.generate(tab, PROMPT, form)
    service.steer(tab, "pin", "lora-anime", form)
    last, outcome = service.compare(tab, "equal")
    assert outcome.recipe.planner == "equal" and outcome.recipe.seed == last.recipe.seed == 5
    ids = [e.expert_id for e in outcome.recipe.loras]
    assert set(ids) == {e.expert_id for e in last.recipe.loras}
    assert len({e.merge_weight for e in outcome.recipe.loras}) == 1  # equal weights
    assert all(p.is_file() for p in outcome.image_paths)
    assert view.report.conversation.turn == 1 and service.thread(tab).conversation.turn == 2
    with pytest.raises(WebUIError, match="expected one of"):
        service.compare(tab, "nonsense")


def test_graph_browser_finds_pages_deprecates_and_reenables(service):
    hits = service.search("castles on hills", k=3)
    assert hits[0][0].id == "lora-castle"
    everything = service.search("", status=None, k=100)
    assert {"lora-old", "xl-lora"} <= {e.id for e, _ in everything}
    deprecated = service.search("", status=ExpertStatus.DEPRECATED)
    assert [e.id for e, _ in deprecated] == ["lora-old"]
    assert all(e.kind == ExpertKind.CKPT for e, _ in service.search("", kind=ExpertKind.CKPT))

    page = service.expert_page("lora-castle")
    assert page.expert.id == "lora-castle" and page.history
    assert page.scores == [] and page.samples == []  # never calibrated: the page says so
    assert "0 reference prompts scored · no sample images" in expert_markdown(page)

    assert service.set_active("lora-castle", False, "looks wrong").status.value == "deprecated"
    active = ExpertStatus.ACTIVE
    assert "lora-castle" not in {e.id for e, _ in service.search("castles", k=3, status=active)}
    assert service.set_active("lora-castle", True).is_active
    assert service.search("castles on hills", k=1, status=active)[0][0].id == "lora-castle"
    with pytest.raises(WebUIError, match="already active"):
        service.set_active("lora-castle", True)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s, t: s.generate(t, "   ", GenerateForm()), "prompt is empty"),
        (lambda s, t: s.steer(t, "pin", "../../etc", GenerateForm()), "not valid"),
        (lambda s, t: s.steer(t, "pin", "", GenerateForm()), "no expert chosen"),
        (lambda s, t: s.override(t, "lora-anime", 0.5, GenerateForm()), "nothing drawn yet"),
        (lambda s, t: s.clear_overrides(t, GenerateForm()), "no coefficient"),
        (lambda s, t: s.exports(t), "nothing drawn yet"),
        (lambda s, t: s.search("x", k=0), "expected 1 to 1000"),
        (lambda s, t: s.expert_page("no-such-expert"), "no-such-expert"),
    ],
)
def test_bad_inputs_are_messages(service, call, match):
    with pytest.raises(Exception, match=match) as raised:
        call(service, service.new_tab())
    from graph.errors import DiffGraphError

    assert isinstance(raised.value, DiffGraphError)


@pytest.mark.parametrize(
    "fields", [{"seed": -1}, {"steps": 0}, {"width": 8}, {"images": 17}, {"height": 10**6}]
)
def test_the_form_is_checked_like_the_cli(fields):
    with pytest.raises(ValidationError):
        GenerateForm(**fields)


def test_a_cancelled_generation_leaves_the_thread_as_it_was(service):
    tab = service.new_tab()
    form = GenerateForm(seed=1)
    service.generate(tab, PROMPT, form)
    before = service.thread(tab).conversation
    seen = []

    def on_step(done, total):
        seen.append(done)
        service.cancel(tab)

    with pytest.raises(GenerationCancelled):
        service.steer(tab, "pin", "lora-anime", form, on_step)
    assert seen == [1]
    after = service.thread(tab).conversation
    assert after.model_dump() == before.model_dump() and after.pinned == []
    view = service.steer(tab, "pin", "lora-anime", form)  # the next one runs
    assert "lora-anime" in merged(view)


def test_two_tabs_generating_at_once_are_queued(service):
    tabs = [service.new_tab(), service.new_tab()]
    steps: list[tuple[int, int]] = []
    views: dict[int, object] = {}
    errors = []

    def run(i):
        try:
            on_step = lambda done, total: steps.append((i, done))  # noqa: E731
            form = GenerateForm(seed=10 + i, images=2)
            views[i] = service.generate(tabs[i], f"{PROMPT}, tab {i}", form, on_step)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    owners = [i for i, _ in steps]
    # each generation's steps are contiguous: one ran after the other, never interleaved
    assert owners == sorted(owners) or owners == sorted(owners, reverse=True)
    for i in range(2):
        recipe = views[i].report.conversation.last.recipe
        assert recipe.seed == 10 + i and recipe.prompt.endswith(f"tab {i}")
        assert len(views[i].report.conversation.last.images) == 2


def test_traces_list_runs_and_open_a_timeline(service):
    from agents.webui import traces

    service.generate(service.new_tab(), PROMPT, GenerateForm())
    rows = traces.run_rows(service.settings.traces_dir)
    agents = {row[1] for row in rows}
    assert {"chat", "selection"} <= agents
    key = next(row[0] for row in rows if row[1] == "selection")
    events = traces.timeline(service.settings.traces_dir, key)
    assert events[0][2] == "run_start" and events[-1][2] == "run_end"
    with pytest.raises(WebUIError, match="no run chosen"):
        traces.timeline(service.settings.traces_dir, "../etc")


def test_a_crawl_stops_and_resumes(service, chat_template, tmp_path):
    import shutil

    from agents.webui.crawls import CrawlJob, crawl_request

    loras = tmp_path / "webui" / "models" / "Lora"  # A1111's layout
    loras.mkdir(parents=True)
    for path in (chat_template.parent / "experts").glob("lora-*.safetensors"):
        shutil.copy(path, loras / path.name)
    files = len(list(loras.iterdir()))
    settings = service.settings.model_copy(update={"data_dir": tmp_path / "data"})
    request = crawl_request("local", "sd15", ["lora"], 50, 1, "10m", False, str(tmp_path / "webui"))
    embedder = service.graph.embedder
    stopped = CrawlJob(settings, request, embedder=embedder)
    stopped.stop()  # pressed before its first node ends
    stopped.start().join()
    assert stopped.state == "stopped" and "resume" in stopped.log[-1]
    resumed = CrawlJob(settings, request, embedder=embedder).start()
    resumed.join()
    assert resumed.state == "finished", resumed.log
    assert len(resumed.report.registered) == files
    assert resumed.progress().startswith("finished")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("local", "sd15", ["lora"], 5, 1, "1h", False, ""), "path of a model folder"),
        (("demo", "sd15", ["lora"], 0, 1, "1h", False, ""), "max_experts"),
        (("demo", "sd15", ["lora"], 5, 1, "soon", False, ""), "invalid crawl option"),
        (("nowhere", "sd15", ["lora"], 5, 1, "1h", False, ""), "source"),
    ],
)
def test_crawl_options_are_checked(args, match):
    from agents.webui.crawls import crawl_request

    with pytest.raises(WebUIError, match=match):
        crawl_request(*args)
