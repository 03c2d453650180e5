"""What the web UI does, without the UI: chat turns on threads, steering, comparing plans,
exports, and the graph browser's reads and edits.

Everything that generates goes through one lock: the generator merges weights into the
loaded pipeline in place, so two browser tabs generating at once wait for each other.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from agents.chat.result import TurnReport
from agents.chat.state import Conversation, Generation
from agents.pipeline.pipeline import GenerateOptions, Outcome
from agents.selection.result import SelectionResult
from agents.webui.errors import GenerationCancelled, WebUIError
from graph.records import ID_PATTERN, BaseFamily, Expert, ExpertKind, ExpertStatus

if TYPE_CHECKING:
    from agents.pipeline.pipeline import PipelineContext
    from tools.settings import Settings

OnStep = Callable[[int, int], None]
SteerAction = Literal["pin", "ban", "unpin", "unban"]
COMPARE_PLANNERS = ("equal", "random", "learned", "llm")


class GenerateForm(BaseModel):
    """The prompt box's settings, checked with the bounds of the CLI's options."""

    negative_prompt: str = Field("", max_length=2000)
    seed: int = Field(0, ge=0, lt=2**62)
    steps: int | None = Field(None, ge=1, le=500)
    width: int | None = Field(None, ge=16, le=4096)
    height: int | None = Field(None, ge=16, le=4096)
    images: int = Field(1, ge=1, le=16)

    def options(self) -> GenerateOptions:
        return GenerateOptions(
            negative_prompt=self.negative_prompt,
            steps=self.steps,
            width=self.width,
            height=self.height,
            images=self.images,
        )


@dataclass
class Tab:
    """One browser tab: its chat thread and its coefficient overrides (expert id → value)."""

    thread: str
    overrides: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class TurnView(BaseModel):
    """A chat turn and the selection behind its images (why picked, what dropped)."""

    report: TurnReport
    selection: SelectionResult | None = None


class ThreadView(BaseModel):
    """A thread as stored: its conversation, its turns so far and its last selection."""

    conversation: Conversation
    history: list[dict[str, Any]] = Field(default_factory=list)
    selection: SelectionResult | None = None


class CalibrationScore(BaseModel):
    ref_id: str
    prompt: str
    metric: str
    score: float


class CalibrationSample(BaseModel):
    """Calibration's image of an expert for one reference prompt (its first seed)."""

    ref_id: str
    prompt: str
    path: Path


class ExpertPage(BaseModel):
    """An expert's record, its versions, its calibration scores per reference prompt and
    the sample images calibration kept."""

    expert: Expert
    history: list[Expert]
    scores: list[CalibrationScore]
    samples: list[CalibrationSample] = Field(default_factory=list)


class WebService:
    """The web UI's operations on one loaded pipeline (graph, selection, planner, generator)."""

    def __init__(
        self,
        settings: Settings,
        pipeline: PipelineContext,
        out_dir: Path,
        config_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config_file = config_file
        self.pipeline = pipeline
        self.out_dir = Path(out_dir).resolve()
        self._lock = threading.Lock()
        self._cancel: dict[str, set[threading.Event]] = {}  # tab id -> its generations

    @property
    def graph(self):
        return self.pipeline.graph

    @property
    def samples_dir(self) -> Path:
        """Where calibration's sample images are (the page may serve files from there)."""
        from graph.samples import FOLDER

        return (self.graph.config.data_dir / FOLDER).resolve()

    # -- what runs where ---------------------------------------------------------------

    def backends(self) -> list[tuple[str, str, bool]]:
        """``(part, what runs, is a demo backend)`` for the banner, as the CLI says it."""
        generator = self.pipeline.generator
        llm = self.settings.llm
        demo_experts = any(e.demo for e in self.graph.store.experts())
        rows = [
            (
                "base model",
                f"{self.settings.base_model} ({generator.family.value})"
                + (": tiny random weights, images are noise" if generator.demo else ""),
                generator.demo,
            ),
            (
                "LLM",
                f"{llm.model} at {llm.base_url}"
                if llm.configured
                else "none: the deterministic no-LLM rules read messages and select experts",
                not llm.configured,
            ),
            (
                "planner",
                f"{self.pipeline.planner.name}"
                + ("".join(f"; {n}" for n in self.pipeline.notes) if self.pipeline.notes else ""),
                bool(self.pipeline.notes),
            ),
            (
                "graph",
                f"{len(self.graph.store)} experts at {self.settings.graph.store_dir}"
                + (" (DEMO DATA catalogue)" if demo_experts else ""),
                demo_experts,
            ),
        ]
        return rows

    # -- threads and turns -------------------------------------------------------------

    def new_tab(self, thread: str | None = None) -> Tab:
        from agents.chat.graph import thread_id

        return Tab(thread=thread_id(thread))

    def thread(self, tab: Tab) -> ThreadView:
        """The tab's thread as stored (created empty when new)."""
        with self._session(tab, GenerateOptions()) as session:
            values = session.graph.get_state(session.config).values
        return ThreadView(
            conversation=Conversation.of(values),
            history=values.get("history") or [],
            selection=_selection(values),
        )

    def turn(
        self,
        tab: Tab,
        message: str,
        form: GenerateForm,
        on_step: OnStep | None = None,
        seed: int | None = None,
    ) -> TurnView:
        """One chat turn on the tab's thread with the form's options; ``seed`` replaces the
        thread's seed first. Queued behind any other generation."""
        with (
            self._generating(tab, on_step),
            self._session(tab, form.options(), seed) as session,
        ):
            report = session.turn(message)
            values = session.graph.get_state(session.config).values
        return TurnView(report=report, selection=_selection(values))

    def generate(
        self, tab: Tab, prompt: str, form: GenerateForm, on_step: OnStep | None = None
    ) -> TurnView:
        """The prompt box: draw ``prompt`` with the form's seed; the same prompt is drawn
        again (the form's size, steps or negative prompt may have changed)."""
        prompt = prompt.strip()
        if not prompt:
            raise WebUIError("the prompt is empty: write what to draw")
        current = self.thread(tab).conversation.prompt
        message = "/redraw" if prompt == current else f"/prompt {prompt}"
        return self.turn(tab, message, form, on_step, seed=form.seed)

    def steer(
        self,
        tab: Tab,
        action: SteerAction,
        expert_id: str | None,
        form: GenerateForm,
        on_step: OnStep | None = None,
    ) -> TurnView:
        """Pin, ban, unpin or unban an expert, then draw again (a chat command)."""
        expert_id = _expert_id(expert_id)
        return self.turn(tab, f"/{action} {expert_id}", form, on_step)

    def override(
        self,
        tab: Tab,
        expert_id: str | None,
        coefficient: float,
        form: GenerateForm,
        on_step: OnStep | None = None,
    ) -> TurnView:
        """Set one merged expert's coefficient and draw again; kept for this tab's next
        drawings until cleared. The tab keeps its old overrides when drawing fails."""
        expert_id = _expert_id(expert_id)
        if not (isinstance(coefficient, int | float) and 0.0 <= coefficient <= 1.0):
            raise WebUIError(f"coefficient {coefficient!r}: expected a number from 0 to 1")
        last = self._last(tab)
        merged = [e.expert_id for e in last.recipe.checkpoints + last.recipe.loras]
        if expert_id not in merged:
            raise WebUIError(
                f"expert {expert_id!r} is not merged in the last image: choose one of "
                f"{', '.join(merged) or '(none: pin an expert first)'}"
            )
        before = dict(tab.overrides)
        tab.overrides[expert_id] = float(coefficient)
        try:
            return self.turn(tab, "/redraw", form, on_step)
        except BaseException:
            tab.overrides = before
            raise

    def clear_overrides(
        self, tab: Tab, form: GenerateForm, on_step: OnStep | None = None
    ) -> TurnView:
        """Back to the planner's coefficients and draw again."""
        if not tab.overrides:
            raise WebUIError("no coefficient is overridden: move a slider first")
        before, tab.overrides = tab.overrides, {}
        try:
            return self.turn(tab, "/redraw", form, on_step)
        except BaseException:
            tab.overrides = before
            raise

    def compare(
        self, tab: Tab, planner: str, on_step: OnStep | None = None
    ) -> tuple[Generation, Outcome]:
        """The last image beside the same experts planned by ``planner`` on the same seed,
        size and steps (the thread is not changed)."""
        from agents.pipeline.context import load_planner
        from agents.pipeline.pipeline import run

        if planner not in COMPARE_PLANNERS:
            raise WebUIError(f"planner {planner!r}: expected one of {', '.join(COMPARE_PLANNERS)}")
        last = self._last(tab)
        recipe = last.recipe
        chosen, notes = load_planner(self.settings, self.graph, planner)
        options = GenerateOptions(
            seed=recipe.seed,
            steps=recipe.steps,
            guidance=recipe.guidance,
            width=recipe.width,
            height=recipe.height,
            negative_prompt=recipe.negative_prompt,
            images=max(len(last.images), 1),
            experts=[e.expert_id for e in recipe.checkpoints + recipe.loras],
            method=recipe.method,
            method_params=recipe.method_params,
        )
        out = self.out_dir / tab.thread / f"compare-turn-{last.turn:03d}-{planner}"
        pipeline = replace(self.pipeline, planner=chosen, notes=[*self.pipeline.notes, *notes])
        with self._generating(tab, on_step):
            outcome = run(recipe.prompt, pipeline, options, out)
        return last, outcome

    def cancel(self, tab: Tab) -> bool:
        """Stop the tab's generation at its next step, or before it starts when it waits
        behind another; False when the tab has none."""
        events = list(self._cancel.get(tab.id, ()))
        for event in events:
            event.set()
        return bool(events)

    @property
    def pending(self) -> int:
        """Generations running or waiting for their turn."""
        return sum(len(events) for events in list(self._cancel.values()))

    # -- exports -----------------------------------------------------------------------

    def exports(self, tab: Tab) -> dict[str, Path]:
        """The last image's files: ``png`` (A1111 ``parameters`` chunk inside), ``a1111``
        (prompt with ``<lora:…>`` tags), ``comfyui`` (workflow) and ``recipe``."""
        last = self._last(tab)
        stem = last.recipe_path.name.removesuffix(".recipe.json")
        folder = last.recipe_path.parent
        files = {
            "png": last.images[0],
            "a1111": folder / f"{stem}.a1111.txt",
            "comfyui": folder / f"{stem}.comfyui.json",
            "recipe": last.recipe_path,
        }
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise WebUIError(
                f"the file {missing[0]} no longer exists: draw the image again before exporting"
            )
        return files

    def export_merged(self, tab: Tab) -> Path:
        """The last image's merged model as one ``.safetensors`` (with its other exports)."""
        from agents.chat.tools import save

        last = self._last(tab)
        folder = self.out_dir / tab.thread / f"export-turn-{last.turn:03d}"
        saved = save(last, folder, self.settings, merged=True)
        assert saved.merged_model is not None  # save raises when nothing was merged
        return saved.merged_model

    # -- graph browser -----------------------------------------------------------------

    def search(
        self,
        query: str,
        kind: ExpertKind | None = None,
        base: BaseFamily | None = None,
        status: ExpertStatus | None = None,
        k: int = 20,
    ) -> list[tuple[Expert, float | None]]:
        """Experts by similarity of their description to ``query`` (every expert matching
        the filters, in insertion order, when the query is blank)."""
        if not 1 <= k <= 1000:
            raise WebUIError(f"k {k}: expected 1 to 1000 results")
        query = query.strip()
        if len(query) > 2000:
            raise WebUIError(f"the search text has {len(query)} characters: write at most 2000")
        if not query:
            experts = self.graph.store.experts(kind=kind, base=base, status=status)
            return [(e, None) for e in experts[:k]]
        return list(self.graph.search(query, k=k, kind=kind, base=base, status=status))

    def expert_page(self, expert_id: str | None) -> ExpertPage:
        expert_id = _expert_id(expert_id)
        store = self.graph.store
        expert = store.expert(expert_id)
        arrays = store.arrays()
        row = arrays.expert_rows().get(expert_id)
        texts = {r.id: r.text for r in store.reference_prompts()}
        scores = []
        if row is not None:
            for edge in (arrays.edge_index[0] == row).nonzero()[0]:
                ref_id = arrays.ref_ids[arrays.edge_index[1, edge]]
                for metric, value in zip(arrays.metric_names, arrays.edge_attr[edge], strict=True):
                    if not math.isnan(value):
                        scores.append(
                            CalibrationScore(
                                ref_id=ref_id,
                                prompt=texts.get(ref_id, ref_id),
                                metric=metric,
                                score=float(value),
                            )
                        )
        refs = dict.fromkeys(s.ref_id for s in scores)
        samples = [
            CalibrationSample(ref_id=ref_id, prompt=texts.get(ref_id, ref_id), path=path)
            for ref_id, path in self.graph.samples(expert_id, refs).items()
        ]
        return ExpertPage(
            expert=expert, history=store.history(expert_id), scores=scores, samples=samples
        )

    def set_active(self, expert_id: str | None, active: bool, reason: str = "") -> Expert:
        """Deprecate an expert (never selected again) or re-enable it."""
        expert_id = _expert_id(expert_id)
        expert = self.graph.store.expert(expert_id)
        if expert.is_active == active:
            state = "active" if active else "deprecated"
            raise WebUIError(f"expert {expert_id!r} is already {state}")
        with self._lock:  # no selection reads the index while it changes
            if not active:
                self.graph.deprecate(expert_id, reason.strip() or "deprecated in the web UI")
            else:
                self.graph.update_expert(
                    expert.model_copy(
                        update={
                            "status": ExpertStatus.ACTIVE,
                            "status_reason": None,
                            "updated_at": datetime.now(timezone.utc),
                        }
                    ),
                    reembed=False,
                )
        return self.graph.store.expert(expert_id)

    # -- internals ---------------------------------------------------------------------

    def _last(self, tab: Tab) -> Generation:
        last = self.thread(tab).conversation.last
        if last is None:
            raise WebUIError("nothing drawn yet in this thread: write a prompt and generate")
        return last

    @contextmanager
    def _session(self, tab: Tab, options: GenerateOptions, seed: int | None = None):
        from agents.chat.graph import make_context, open_session, threads_path
        from planner.planners import OverridePlanner

        pipeline = self.pipeline
        if tab.overrides:
            pipeline = replace(pipeline, planner=OverridePlanner(pipeline.planner, tab.overrides))
        ctx = make_context(pipeline, self.out_dir, options)
        with open_session(threads_path(self.settings), ctx, tab.thread, seed) as session:
            yield session

    @contextmanager
    def _generating(self, tab: Tab, on_step: OnStep | None) -> Iterator[None]:
        """One generation at a time; ``on_step`` sees every denoising step, and a cancel of
        the tab stops the generation at its next step."""
        cancel = threading.Event()
        self._cancel.setdefault(tab.id, set()).add(cancel)
        try:
            with self._lock:
                if cancel.is_set():  # cancelled while waiting behind another tab
                    raise GenerationCancelled()

                def step(done: int, total: int) -> None:
                    if cancel.is_set():
                        raise GenerationCancelled()
                    if on_step is not None:
                        on_step(done, total)

                with self.pipeline.generator.observing(step):
                    yield
        finally:
            self._cancel[tab.id].discard(cancel)


def _expert_id(expert_id: str | None) -> str:
    expert_id = (expert_id or "").strip()
    if not expert_id:
        raise WebUIError("no expert chosen: pick an expert id from the list")
    if not ID_PATTERN.match(expert_id):
        raise WebUIError(
            f"expert id {expert_id[:80]!r} is not valid: copy an id from the experts table"
        )
    return expert_id


def _selection(values: dict[str, Any]) -> SelectionResult | None:
    data = values.get("selection")
    return SelectionResult.model_validate(data) if data else None
