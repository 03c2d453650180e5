"""The Gradio page: Generate (chat, steer, compare, export), Graph, Crawl and Traces tabs.

Handlers call :class:`~agents.webui.service.WebService`; an error a user can act on shows
as a message in the page (``**error:** …``), any other as a one-line internal error whose
traceback goes to the server log, never to the page.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pandas as pd
from pydantic import ValidationError

from agents.webui import traces, views
from agents.webui.crawls import CrawlJob, crawl_request
from agents.webui.errors import WebUIError
from agents.webui.service import (
    COMPARE_PLANNERS,
    GenerateForm,
    Tab,
    TurnView,
    WebService,
)
from graph.errors import DiffGraphError
from graph.records import BaseFamily, ExpertKind, ExpertStatus

if TYPE_CHECKING:
    from tools.generation.generator import Generator

log = logging.getLogger(__name__)

GENERATION = "generation"  # the concurrency group of every event that generates
CSS = """
#backends table { font-size: 0.85em; }
.error-text { color: #b91c1c; }
#calibration-samples img { image-rendering: pixelated; }
"""


def message(exc: BaseException) -> str:
    """The page's one-line message for ``exc`` (no traceback)."""
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "input"
        return f"{where}: {err['msg']} (got {err.get('input')!r})"
    if isinstance(exc, DiffGraphError):
        return str(exc)
    log.error("web UI handler failed", exc_info=exc)
    return f"internal error ({type(exc).__name__}): see the server log"


def guarded(outputs: int) -> Callable:
    """Run a handler whose first output is the status Markdown; on an error show the
    message there and leave the other ``outputs - 1`` outputs as they are."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as exc:
                error = f"**error:** {views._md(message(exc))}"
                return (error, *[gr.skip()] * (outputs - 1)) if outputs > 1 else error

        return run

    return wrap


def _frame(rows: list[list[Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def _stepper(progress: gr.Progress) -> Callable[[int, int], None]:
    return lambda done, total: progress((done, total), desc=f"step {done}/{total}")


def _enum(value: str | None, kind: type) -> Any:
    return None if not value or value == "any" else kind(value)


def build_ui(service: WebService) -> gr.Blocks:
    """The page over ``service``."""
    generator: Generator = service.pipeline.generator
    from tools.generation.request import DEFAULT_SIDE

    side = DEFAULT_SIDE[generator.family]
    crawl: dict[str, CrawlJob | None] = {"job": None}

    with gr.Blocks(title="DiffGraph", analytics_enabled=False) as ui:
        tab_state = gr.State(None)
        gr.Markdown("## DiffGraph: the right experts for every prompt, merged")
        gr.Markdown(_backends(service), elem_id="backends")

        with gr.Tab("Generate", elem_id="tab-generate"):
            with gr.Row():
                with gr.Column(scale=5):
                    prompt = gr.Textbox(
                        label="Prompt", lines=2, elem_id="prompt", placeholder="what to draw"
                    )
                    negative = gr.Textbox(label="Negative prompt", elem_id="negative")
                    with gr.Row():
                        seed = gr.Number(
                            label="Seed", value=0, precision=0, minimum=0, elem_id="seed"
                        )
                        steps = gr.Slider(
                            1,
                            150,
                            value=service.settings.generation.steps,
                            step=1,
                            label="Steps",
                            elem_id="steps",
                        )
                    with gr.Row():
                        width = gr.Number(label="Width", value=side, precision=0, elem_id="width")
                        height = gr.Number(
                            label="Height", value=side, precision=0, elem_id="height"
                        )
                        images = gr.Slider(
                            1, 16, value=1, step=1, label="Number of images", elem_id="images"
                        )
                    with gr.Row():
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                        cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                    status = gr.Markdown(elem_id="status")
                    conversation = gr.Markdown(elem_id="conversation")
                    chat = gr.Chatbot(
                        label="Conversation (this thread)", elem_id="chat", height=260
                    )
                    with gr.Row():
                        chat_message = gr.Textbox(
                            show_label=False,
                            placeholder='refine: "more cinematic lighting", "drop the anime '
                            'style", "use fewer experts", /help',
                            elem_id="message",
                            scale=5,
                        )
                        send_btn = gr.Button("Send", elem_id="send", scale=1)
                    with gr.Row():
                        thread_box = gr.Textbox(label="Thread", elem_id="thread", scale=4)
                        open_btn = gr.Button("Open thread", elem_id="open-thread", scale=1)
                        new_btn = gr.Button("New thread", elem_id="new-thread", scale=1)
                with gr.Column(scale=6):
                    gallery = gr.Gallery(
                        label="Images", elem_id="gallery", columns=2, format="png", height=360
                    )
                    recipe_md = gr.Markdown(elem_id="recipe")
                    experts_df = gr.Dataframe(
                        headers=views.EXPERT_COLUMNS,
                        label="Experts merged",
                        interactive=False,
                        wrap=True,
                        elem_id="experts",
                    )
                    dropped_df = gr.Dataframe(
                        headers=views.DROPPED_COLUMNS,
                        label="Dropped",
                        interactive=False,
                        wrap=True,
                        elem_id="dropped",
                    )
            with gr.Accordion("Steer", open=True):
                with gr.Row():
                    steer_expert = gr.Dropdown(
                        label="Expert",
                        choices=[],
                        allow_custom_value=True,
                        elem_id="steer-expert",
                        scale=3,
                    )
                    pin_btn = gr.Button("Pin", elem_id="pin", scale=1)
                    ban_btn = gr.Button("Ban", elem_id="ban", scale=1)
                    unpin_btn = gr.Button("Unpin", elem_id="unpin", scale=1)
                    unban_btn = gr.Button("Unban", elem_id="unban", scale=1)
                with gr.Row():
                    coefficient = gr.Slider(
                        0.0, 1.0, value=0.5, step=0.01, label="Coefficient", elem_id="coefficient"
                    )
                    override_btn = gr.Button("Set coefficient and redraw", elem_id="override")
                    clear_btn = gr.Button("Planner's coefficients", elem_id="clear-overrides")
                with gr.Row():
                    compare_planner = gr.Dropdown(
                        label="Compare with planner",
                        choices=list(COMPARE_PLANNERS),
                        value="equal",
                        elem_id="compare-planner",
                        scale=3,
                    )
                    compare_btn = gr.Button("Compare on the same seed", elem_id="compare")
                compare_md = gr.Markdown(elem_id="compare-status")
                with gr.Row():
                    with gr.Column():
                        compare_a = gr.Gallery(
                            label="This plan", elem_id="compare-a", columns=2, format="png"
                        )
                        compare_a_df = gr.Dataframe(
                            headers=views.EXPERT_COLUMNS, interactive=False, elem_id="compare-a-df"
                        )
                    with gr.Column():
                        compare_b = gr.Gallery(
                            label="Other plan", elem_id="compare-b", columns=2, format="png"
                        )
                        compare_b_df = gr.Dataframe(
                            headers=views.EXPERT_COLUMNS, interactive=False, elem_id="compare-b-df"
                        )
            with gr.Accordion("Export", open=True):
                a1111_text = gr.Textbox(
                    label="A1111 prompt (<lora:…> tags and parameters)",
                    lines=3,
                    elem_id="a1111",
                    buttons=["copy"],
                )
                with gr.Row():
                    dl_png = gr.DownloadButton("PNG with recipe", elem_id="dl-png")
                    dl_a1111 = gr.DownloadButton("A1111 prompt .txt", elem_id="dl-a1111")
                    dl_comfyui = gr.DownloadButton("ComfyUI workflow .json", elem_id="dl-comfyui")
                    dl_recipe = gr.DownloadButton("Recipe .json", elem_id="dl-recipe")
                with gr.Row():
                    merged_btn = gr.Button("Build merged .safetensors", elem_id="build-merged")
                    dl_merged = gr.DownloadButton(
                        "Merged .safetensors", elem_id="dl-merged", interactive=False
                    )
                export_md = gr.Markdown(elem_id="export-status")

        with gr.Tab("Graph", elem_id="tab-graph"):
            with gr.Row():
                query = gr.Textbox(label="Search experts", elem_id="graph-query", scale=4)
                kind = gr.Dropdown(
                    ["any", *(k.value for k in ExpertKind)], value="any", label="Kind", scale=1
                )
                base = gr.Dropdown(
                    ["any", *(b.value for b in BaseFamily)], value="any", label="Base", scale=1
                )
                state = gr.Dropdown(
                    ["any", *(s.value for s in ExpertStatus)],
                    value="active",
                    label="Status",
                    scale=1,
                    elem_id="graph-status-filter",
                )
                search_btn = gr.Button("Search", variant="primary", elem_id="graph-search")
            graph_status = gr.Markdown(elem_id="graph-status")
            results = gr.Dataframe(
                headers=views.SEARCH_COLUMNS,
                interactive=False,
                wrap=True,
                elem_id="graph-results",
            )
            with gr.Row():
                expert_pick = gr.Dropdown(
                    label="Expert", choices=[], allow_custom_value=True, elem_id="graph-expert"
                )
                open_expert_btn = gr.Button("Open", elem_id="graph-open")
            with gr.Row():
                with gr.Column():
                    expert_md = gr.Markdown(elem_id="expert-page")
                    with gr.Row():
                        reason = gr.Textbox(label="Reason", elem_id="deprecate-reason", scale=3)
                        deprecate_btn = gr.Button("Deprecate", elem_id="deprecate")
                        reenable_btn = gr.Button("Re-enable", elem_id="reenable")
                with gr.Column():
                    chart = gr.BarPlot(
                        x="prompt",
                        y="score",
                        color="metric",
                        title="Calibration scores per reference prompt",
                        elem_id="calibration",
                        x_label_angle=-30,
                    )
                    samples = gr.Gallery(
                        label="Calibration samples: the first seed per reference prompt",
                        elem_id="calibration-samples",
                        columns=4,
                        height=280,
                        object_fit="contain",
                        format="png",
                    )

        with gr.Tab("Crawl", elem_id="tab-crawl"):
            with gr.Row():
                source = gr.Dropdown(
                    ["demo", "civitai", "huggingface", "local"],
                    value="demo",
                    label="Source",
                    elem_id="crawl-source",
                )
                crawl_base = gr.Dropdown(
                    [b.value for b in BaseFamily], value="sd15", label="Base", elem_id="crawl-base"
                )
                types = gr.CheckboxGroup(
                    ["lora", "checkpoint"],
                    value=["lora", "checkpoint"],
                    label="Types",
                    elem_id="crawl-types",
                )
                local_path = gr.Textbox(label="Local folder (source local)", elem_id="crawl-path")
            with gr.Row():
                max_experts = gr.Number(
                    label="Max experts", value=50, precision=0, minimum=1, elem_id="crawl-max"
                )
                max_gb = gr.Number(
                    label="Download budget (GB)", value=20, minimum=0, elem_id="crawl-gb"
                )
                budget = gr.Textbox(label="Time budget", value="2h", elem_id="crawl-budget")
                calibrate = gr.Checkbox(label="Calibrate", value=True, elem_id="crawl-calibrate")
                fresh = gr.Checkbox(
                    label="Fresh session (do not resume)", value=False, elem_id="crawl-fresh"
                )
            with gr.Row():
                crawl_start = gr.Button("Start / resume", variant="primary", elem_id="crawl-start")
                crawl_stop = gr.Button("Stop", variant="stop", elem_id="crawl-stop")
            crawl_progress = gr.Markdown(elem_id="crawl-progress")
            crawl_log = gr.Textbox(label="Log", lines=14, elem_id="crawl-log", autoscroll=True)
            timer = gr.Timer(1.0)

        with gr.Tab("Traces", elem_id="tab-traces"):
            with gr.Row():
                refresh_btn = gr.Button("List runs", elem_id="traces-refresh")
                summary_btn = gr.Button("Summary (eval traces)", elem_id="traces-summary")
            traces_status = gr.Markdown(elem_id="traces-status")
            runs = gr.Dataframe(
                headers=traces.RUN_COLUMNS, interactive=False, elem_id="runs", max_height=300
            )
            with gr.Row():
                run_pick = gr.Dropdown(
                    label="Run", choices=[], allow_custom_value=True, elem_id="run"
                )
                open_run_btn = gr.Button("Open timeline", elem_id="open-run")
            timeline = gr.Dataframe(
                headers=traces.TIMELINE_COLUMNS, interactive=False, wrap=True, elem_id="timeline"
            )
            timeline_chart = gr.BarPlot(
                x="node", y="ms", title="Latency by node (ms)", elem_id="timeline-chart"
            )
            agents_df = gr.Dataframe(interactive=False, elem_id="trace-agents")
            nodes_df = gr.Dataframe(interactive=False, elem_id="trace-nodes")

        # -- generate / chat / steer ----------------------------------------------------

        form_inputs = [negative, seed, steps, width, height, images]
        result_outputs = [
            status,
            tab_state,
            gallery,
            recipe_md,
            experts_df,
            dropped_df,
            conversation,
            chat,
            steer_expert,
            seed,
            a1111_text,
            dl_png,
            dl_a1111,
            dl_comfyui,
            dl_recipe,
            thread_box,
        ]

        def form(negative, seed, steps, width, height, images) -> GenerateForm:
            return GenerateForm(
                negative_prompt=negative or "",
                seed=int(seed) if seed is not None else 0,
                steps=int(steps) if steps else None,
                width=int(width) if width else None,
                height=int(height) if height else None,
                images=int(images or 1),
            )

        def shown(tab: Tab, view: TurnView | None, history: list, said: str | None) -> tuple:
            """Every result output for the tab's thread after ``view`` (None: as stored)."""
            thread = service.thread(tab)
            conv = thread.conversation
            selection = view.selection if view is not None else thread.selection
            last = conv.last
            history = list(history or [])
            if said is not None and view is not None:
                history += [
                    {"role": "user", "content": said},
                    {"role": "assistant", "content": views.assistant_text(view)},
                ]
            files = service.exports(tab) if last is not None else {}
            ids = views.steerable_ids(last, selection)
            return (
                views.turn_status(view) if view is not None else "",
                tab,
                [str(p) for p in last.images] if last else [],
                views.recipe_summary(last.recipe) if last else "",
                _frame(
                    views.expert_rows(last.recipe, selection, conv, tab.overrides) if last else [],
                    views.EXPERT_COLUMNS,
                ),
                _frame(
                    views.dropped_rows(last.recipe, selection, conv) if last else [],
                    views.DROPPED_COLUMNS,
                ),
                views.conversation_line(conv, tab.overrides),
                history,
                gr.update(choices=ids, value=ids[0] if ids else None),
                conv.seed,
                (files["a1111"].read_text(encoding="utf-8") if files else ""),
                *(
                    gr.update(value=str(files[k]) if files else None, interactive=bool(files))
                    for k in ("png", "a1111", "comfyui", "recipe")
                ),
                tab.thread,
            )

        def on_load(tab: Tab | None, history: list):
            tab = tab or service.new_tab()
            return shown(tab, None, views.history_messages(service.thread(tab)), None)

        @guarded(len(result_outputs))
        def do_generate(tab, history, text, *args, progress=gr.Progress()):  # noqa: B008
            view = service.generate(tab, text, form(*args), _stepper(progress))
            return shown(tab, view, history, text)

        @guarded(len(result_outputs))
        def do_send(tab, history, text, *args, progress=gr.Progress()):  # noqa: B008
            if not (text or "").strip():
                raise WebUIError("the message is empty: write a refinement or a command (/help)")
            view = service.turn(tab, text, form(*args), _stepper(progress))
            return shown(tab, view, history, text)

        def steer(action: str) -> Callable:
            @guarded(len(result_outputs))
            def do_steer(tab, history, expert_id, *args, progress=gr.Progress()):  # noqa: B008
                view = service.steer(tab, action, expert_id, form(*args), _stepper(progress))
                return shown(tab, view, history, f"/{action} {expert_id}")

            return do_steer

        @guarded(len(result_outputs))
        def do_override(tab, history, expert_id, value, *args, progress=gr.Progress()):  # noqa: B008
            view = service.override(tab, expert_id, float(value), form(*args), _stepper(progress))
            return shown(tab, view, history, f"coefficient of {expert_id} → {float(value):.2f}")

        @guarded(len(result_outputs))
        def do_clear(tab, history, *args, progress=gr.Progress()):  # noqa: B008
            view = service.clear_overrides(tab, form(*args), _stepper(progress))
            return shown(tab, view, history, "back to the planner's coefficients")

        @guarded(len(result_outputs))
        def do_open(tab, thread):
            tab = service.new_tab((thread or "").strip() or None)
            return shown(tab, None, views.history_messages(service.thread(tab)), None)

        @guarded(len(result_outputs))
        def do_new(tab):
            tab = service.new_tab()
            return shown(tab, None, [], None)

        ui.load(on_load, [tab_state, chat], result_outputs)
        generating = [
            generate_btn.click(
                do_generate,
                [tab_state, chat, prompt, *form_inputs],
                result_outputs,
                concurrency_id=GENERATION,
                concurrency_limit=1,
            ),
            prompt.submit(
                do_generate,
                [tab_state, chat, prompt, *form_inputs],
                result_outputs,
                concurrency_id=GENERATION,
                concurrency_limit=1,
            ),
            send_btn.click(
                do_send,
                [tab_state, chat, chat_message, *form_inputs],
                result_outputs,
                concurrency_id=GENERATION,
                concurrency_limit=1,
            ),
            chat_message.submit(
                do_send,
                [tab_state, chat, chat_message, *form_inputs],
                result_outputs,
                concurrency_id=GENERATION,
                concurrency_limit=1,
            ),
            override_btn.click(
                do_override,
                [tab_state, chat, steer_expert, coefficient, *form_inputs],
                result_outputs,
                concurrency_id=GENERATION,
                concurrency_limit=1,
            ),
            clear_btn.click(
                do_clear,
                [tab_state, chat, *form_inputs],
                result_outputs,
                concurrency_id=GENERATION,
                concurrency_limit=1,
            ),
        ]
        for button, action in (
            (pin_btn, "pin"),
            (ban_btn, "ban"),
            (unpin_btn, "unpin"),
            (unban_btn, "unban"),
        ):
            generating.append(
                button.click(
                    steer(action),
                    [tab_state, chat, steer_expert, *form_inputs],
                    result_outputs,
                    concurrency_id=GENERATION,
                    concurrency_limit=1,
                )
            )
        open_btn.click(do_open, [tab_state, thread_box], result_outputs)
        new_btn.click(do_new, [tab_state], result_outputs)

        def pick_coefficient(tab, expert_id):
            """The slider shows the picked expert's coefficient in the last image."""
            try:
                last = service.thread(tab).conversation.last if tab else None
            except DiffGraphError:
                return gr.skip()
            for e in last.recipe.checkpoints + last.recipe.loras if last else []:
                if e.expert_id == expert_id:
                    return round(e.coefficient, 2)
            return gr.skip()

        steer_expert.change(pick_coefficient, [tab_state, steer_expert], coefficient)

        @guarded(5)
        def do_compare(tab, planner, progress=gr.Progress()):  # noqa: B008
            last, outcome = service.compare(tab, planner, _stepper(progress))
            conv = service.thread(tab).conversation
            return (
                f"same experts, seed {last.recipe.seed}: left planner "
                f"`{last.recipe.planner}`, right planner `{outcome.recipe.planner}`"
                + "".join(f"\n- note: {views._md(n)}" for n in outcome.recipe.notes),
                [str(p) for p in last.images],
                _frame(
                    views.expert_rows(last.recipe, None, conv, tab.overrides),
                    views.EXPERT_COLUMNS,
                ),
                [str(p) for p in outcome.image_paths],
                _frame(views.expert_rows(outcome.recipe, None), views.EXPERT_COLUMNS),
            )

        generating.append(
            compare_btn.click(
                do_compare,
                [tab_state, compare_planner],
                [compare_md, compare_a, compare_a_df, compare_b, compare_b_df],
                concurrency_id=GENERATION,
                concurrency_limit=1,
            )
        )

        def do_cancel(tab):
            if tab is None or not service.cancel(tab):
                return "nothing to cancel: this tab is not generating"
            return "**cancelled:** the thread is as it was before the request"

        cancel_btn.click(do_cancel, [tab_state], [status], cancels=generating)

        @guarded(2)
        def do_merged(tab):
            path = service.export_merged(tab)
            return f"merged model written: `{path.name}`", gr.update(
                value=str(path), interactive=True
            )

        merged_btn.click(do_merged, [tab_state], [export_md, dl_merged])

        # -- graph browser --------------------------------------------------------------

        @guarded(3)
        def do_search(text, kind_, base_, status_):
            hits = service.search(
                text or "",
                _enum(kind_, ExpertKind),
                _enum(base_, BaseFamily),
                _enum(status_, ExpertStatus),
            )
            ids = [e.id for e, _ in hits]
            found = f"{len(hits)} experts" + (f" for {views._md(text)!r}" if text else "")
            return (
                found,
                _frame(views.search_rows(hits), views.SEARCH_COLUMNS),
                gr.update(choices=ids, value=ids[0] if ids else None),
            )

        search_outputs = [graph_status, results, expert_pick]
        search_btn.click(do_search, [query, kind, base, state], search_outputs)
        query.submit(do_search, [query, kind, base, state], search_outputs)

        def page_outputs(expert_id: str, said: str = "") -> tuple:
            page = service.expert_page(expert_id)
            return (
                said,
                views.expert_markdown(page),
                pd.DataFrame(views.calibration_rows(page)),
                views.calibration_samples(page),
            )

        @guarded(4)
        def do_open_expert(expert_id):
            return page_outputs(expert_id)

        @guarded(4)
        def do_select(evt: gr.SelectData):
            row = evt.row_value if isinstance(evt.row_value, list) else None
            if not row:
                raise WebUIError("pick a row of the results")
            return page_outputs(row[0])

        @guarded(4)
        def do_status(expert_id, why, active: bool):
            expert = service.set_active(expert_id, active, why or "")
            return page_outputs(expert.id, f"{expert.id} is now {expert.status.value}")

        page = [graph_status, expert_md, chart, samples]
        open_expert_btn.click(do_open_expert, [expert_pick], page)
        results.select(do_select, None, page)
        deprecate_btn.click(lambda i, r: do_status(i, r, False), [expert_pick, reason], page)
        reenable_btn.click(lambda i, r: do_status(i, r, True), [expert_pick, reason], page)

        # -- crawl ----------------------------------------------------------------------

        def crawl_view() -> tuple[str, str]:
            job = crawl["job"]
            if job is None:
                return "no crawl yet", ""
            return job.progress(), "\n".join(job.log[-400:])

        @guarded(2)
        def do_crawl(src, base_, types_, path, n, gb, time_budget, calib, fresh_):
            job = crawl["job"]
            if job is not None and job.running:
                raise WebUIError("a crawl is running: stop it first (one crawl at a time)")
            request = crawl_request(
                src, base_, types_ or [], n or 0, gb or 0, time_budget, calib, path or ""
            )
            crawl["job"] = CrawlJob(
                service.settings, request, fresh_, service.graph.embedder
            ).start()
            return crawl_view()

        def do_stop():
            job = crawl["job"]
            if job is not None:
                job.stop()
            return crawl_view()

        crawl_start.click(
            do_crawl,
            [source, crawl_base, types, local_path, max_experts, max_gb, budget, calibrate, fresh],
            [crawl_progress, crawl_log],
        )
        crawl_stop.click(do_stop, None, [crawl_progress, crawl_log])
        timer.tick(crawl_view, None, [crawl_progress, crawl_log], show_progress="hidden")

        # -- traces ---------------------------------------------------------------------

        traces_dir = service.settings.traces_dir

        @guarded(3)
        def do_runs():
            rows = traces.run_rows(traces_dir)
            keys = [r[0] for r in rows]
            return (
                f"{len(rows)} runs under `{traces_dir}`",
                _frame(rows, traces.RUN_COLUMNS),
                gr.update(choices=keys, value=keys[0] if keys else None),
            )

        @guarded(3)
        def do_timeline(key):
            rows = traces.timeline(traces_dir, key)
            frame = _frame(rows, traces.TIMELINE_COLUMNS)
            timed = frame[frame["ms"].notna()]
            chart_rows = pd.DataFrame(
                {
                    "node": [f"{r['node'] or r['event']} #{i}" for i, r in timed.iterrows()],
                    "ms": timed["ms"].astype(float),
                }
            )
            return f"run `{key}`: {len(rows)} events", frame, chart_rows

        @guarded(3)
        def do_summary():
            report = traces.summary(traces_dir, service.config_file)
            return (
                f"{report['runs']} runs in {report['files']} trace files",
                pd.DataFrame(report["agents"]),
                pd.DataFrame(report["nodes"]),
            )

        refresh_btn.click(do_runs, None, [traces_status, runs, run_pick])
        open_run_btn.click(do_timeline, [run_pick], [traces_status, timeline, timeline_chart])
        summary_btn.click(do_summary, None, [traces_status, agents_df, nodes_df])

    return ui


def _backends(service: WebService) -> str:
    rows = ["| part | what runs | |", "|---|---|---|"]
    for part, what, demo in service.backends():
        rows.append(f"| {part} | {views._md(what)} | {'**DEMO**' if demo else ''} |")
    return "\n".join(rows)


def theme() -> gr.themes.Base:
    """The default theme with local fonts (no font download: the UI works offline)."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )


def launch(
    service: WebService,
    host: str = "127.0.0.1",
    port: int = 7860,
    token: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Serve the page; ``token``: the password of the login form (any user name)."""
    ui = build_ui(service)
    ui.queue(default_concurrency_limit=4)
    auth = None
    if token:
        auth = lambda _user, password: secrets.compare_digest(password, token)  # noqa: E731
    ui.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        auth_message="DiffGraph: enter the access token as the password (any user name)",
        prevent_thread_lock=not block,
        show_error=False,
        quiet=True,
        ssr_mode=False,
        allowed_paths=[str(service.out_dir), str(service.samples_dir)],
        theme=theme(),
        css=CSS,
        footer_links=[],
    )
    return ui
