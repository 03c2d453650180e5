"""``diffgraph eval benchmark``: every method on the same prompts, seeds and experts.

For each prompt the Expert Selection Agent runs once; then every row (evals.methods)
makes its images with the prompt's seed, and each image is scored with the scorers this
machine has (evals.scoring). The report holds every image's scores and experts, the mean
of each metric per row (the paper's Table 1, and the ablation rows), and says which parts
ran on demo backends. It is written as ``benchmark.json``, ``benchmark.md`` and an HTML
gallery (evals.gallery) in the output folder; the images and their recipes sit under
``images/<row>/``.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from evals.errors import BenchmarkError
from evals.methods import (
    DEFAULT_METHODS,
    Bench,
    Method,
    PromptCase,
    RowCall,
    RowExpert,
    get_methods,
)
from graph.errors import DiffGraphError

if TYPE_CHECKING:
    from agents.pipeline.pipeline import PipelineContext
    from evals.scoring import Scoring
    from tools.settings import Settings

log = logging.getLogger(__name__)

AGENT = "benchmark"
METRIC_LABELS = {
    "clip_score": "CLIP score",
    "aesthetic": "Aesthetic",
    "image_reward": "ImageReward",
    "hps_v21": "HPS v2.1",
    "pick_score": "PickScore",
    "world_judge": "World judge",
}


class BenchmarkOptions(BaseModel):
    """What a benchmark run compares and how it generates."""

    methods: list[str] = Field(default_factory=lambda: list(DEFAULT_METHODS))
    ablations: list[str] = Field(default_factory=list)
    seed: int = Field(0, ge=0, description="prompt i uses seed + i in every row")
    width: int | None = None
    height: int | None = None
    steps: int | None = Field(None, ge=1, le=500)
    images: int = Field(1, ge=1, le=16, description="images per prompt and row")
    fixed_experts: list[str] | None = Field(None, description="'Ours fixed' expert ids")
    planner_checkpoints: dict[str, Path] = Field(
        default_factory=dict, description="planner variant → checkpoint"
    )
    train_steps: int | None = Field(
        None, ge=1, description="train missing planner variants this long (synthetic reward)"
    )
    metrics: list[str] | None = Field(None, description="default: scorers.metrics")
    demo_scorers: bool = False
    merge_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="merge method → its parameters (e.g. ties density)"
    )
    embed_images: bool = Field(False, description="put the images inside the gallery page")


class ScoredImage(BaseModel):
    path: str = Field(description="relative to the benchmark's folder")
    seed: int
    scores: dict[str, float]


class RowResult(BaseModel):
    """One row's images for one prompt, with their scores, experts and coefficients."""

    prompt_index: int
    method: str
    images: list[ScoredImage] = Field(default_factory=list)
    experts: list[RowExpert] = Field(default_factory=list)
    planner: str = "none"
    merge: str = "none"
    prompt_used: str = ""
    demo: bool = False
    notes: list[str] = Field(default_factory=list)
    recipe: str | None = None
    error: str | None = None


class MethodSummary(BaseModel):
    """A line of the table: the mean of each metric over every image of the row."""

    name: str
    label: str
    kind: str
    description: str
    images: int = 0
    means: dict[str, float | None] = Field(default_factory=dict)
    source: str | None = Field(None, description="where its planner or resource came from")
    unavailable: str | None = None
    errors: list[str] = Field(default_factory=list)
    demo: bool = False
    notes: list[str] = Field(default_factory=list)


class PromptInfo(BaseModel):
    index: int
    prompt: str
    text: str
    seed: int
    selected: list[str]
    selection_mode: str
    gold: list[str] | None = None


class BenchmarkReport(BaseModel):
    """Everything the benchmark measured; the Markdown and the gallery are views of it."""

    demo: bool
    backends: dict[str, str]
    metrics: list[str]
    unavailable_metrics: dict[str, str] = Field(default_factory=dict)
    prompts: list[PromptInfo]
    fixed_experts: list[str]
    methods: list[MethodSummary]
    rows: list[RowResult]
    notes: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)

    def summary(self, name: str) -> MethodSummary:
        return next(m for m in self.methods if m.name == name)


def run_benchmark(
    settings: Settings,
    prompts: Sequence[str],
    options: BenchmarkOptions,
    out_dir: Path,
    ctx: PipelineContext | None = None,
    gold: Sequence[Sequence[str]] | None = None,
) -> BenchmarkReport:
    """Run every requested row on ``prompts``; write JSON, Markdown and the gallery.

    ``ctx``: components already built (then its settings are the run's settings).
    ``gold``: per prompt, the expert ids that serve it (the oracle rows, and 'Ours fixed'
    plans over them instead of one fixed set).
    """
    from agents.pipeline.context import build_context

    if not prompts:
        raise BenchmarkError("no prompts: give a prompt file with at least one line")
    if gold is not None and len(gold) != len(prompts):
        raise BenchmarkError(f"{len(gold)} gold expert sets for {len(prompts)} prompts")
    rows = get_methods(options.methods, "method") + get_methods(options.ablations, "ablation")
    _check_options(options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    owned = ctx is None
    ctx = ctx or build_context(settings, planner="equal")
    try:
        return _run(ctx, prompts, options, rows, out_dir, gold)
    finally:
        if owned:
            ctx.graph.close()


def _run(
    ctx: PipelineContext,
    prompts: Sequence[str],
    options: BenchmarkOptions,
    rows: list[Method],
    out_dir: Path,
    gold: Sequence[Sequence[str]] | None = None,
) -> BenchmarkReport:
    from agents.pipeline.pipeline import GenerateOptions, fresh_selection_context
    from agents.selection.graph import select
    from evals.gallery import write_gallery
    from evals.scoring import load_scoring
    from tools.generation.request import GenerationRequest
    from tools.tracing import TraceWriter

    settings = ctx.settings
    ctx.generator.check(  # a size this model cannot make fails here, not in every row
        GenerationRequest(prompts=["-"], width=options.width, height=options.height)
    )
    demo_dir = out_dir / "demo-scorers" if options.demo_scorers else None
    scoring = load_scoring(settings, options.metrics, demo_dir)
    tracer = TraceWriter.from_settings(settings, AGENT)
    tracer.run_start({"prompts": list(prompts), "options": options.model_dump(mode="json")})
    try:
        pool = _pool(ctx)
        cases = []
        for index, prompt in enumerate(prompts):
            selection = select(prompt, fresh_selection_context(ctx))
            labels = None if gold is None else list(gold[index])
            cases.append(PromptCase(index, prompt, options.seed + index, selection, labels))
        bench = Bench(
            pipeline=ctx,
            options=GenerateOptions(
                width=options.width,
                height=options.height,
                steps=options.steps,
                images=options.images,
            ),
            out_dir=out_dir,
            pool=pool,
            fixed_experts=[],
            pool_limit=settings.benchmark.pool_limit,
            merge_params=options.merge_params,
            checkpoints=dict(options.planner_checkpoints),
            train_steps=options.train_steps,
            train_prompts=list(prompts),
            tracer=tracer,
        )
        notes = []
        if gold is not None:
            notes.append("Ours fixed: the planner over each prompt's gold experts")
        elif any(r.name == "ours-fixed" for r in rows):
            bench.fixed_experts, note = _fixed_experts(bench, cases, options, settings)
            notes += [note] if note else []
        unavailable = _prepare(bench, rows)
        results = [
            _row(bench, case, row, scoring, tracer)
            for case in cases
            for row in rows
            if row.name not in unavailable
        ]
        report = _report(ctx, scoring, cases, bench, rows, unavailable, results, notes)
    except BaseException as exc:
        tracer.event("run_end", error=exc)
        tracer.close()
        raise
    report.files = {
        "json": "benchmark.json",
        "markdown": "benchmark.md",
        "gallery": write_gallery(report, out_dir, options.embed_images).name,
    }
    _write_text(out_dir / "benchmark.md", to_markdown(report))
    _write_text(out_dir / "benchmark.json", report.model_dump_json(indent=2))
    tracer.run_end(
        {"means": {m.name: m.means for m in report.methods}, "files": report.files},
        demo=report.demo,
    )
    return report


# -- preparation -------------------------------------------------------------------------


def _check_options(options: BenchmarkOptions) -> None:
    """Refuse what would fail in every row, before anything is loaded."""
    from evals.variants import VARIANTS
    from tools.weights.methods import method_params

    for method, values in options.merge_params.items():
        method_params(method, values)  # raises MergeConfigError naming the bad field
    unknown = sorted(set(options.planner_checkpoints) - set(VARIANTS))
    if unknown:
        raise BenchmarkError(
            f"--planner-checkpoint for unknown variant(s) {unknown}: expected {list(VARIANTS)}"
        )


def _pool(ctx: PipelineContext) -> list:
    """Active experts of the loaded family whose weights are on this machine."""
    from graph.records import ExpertStatus

    experts = ctx.graph.store.experts(base=ctx.generator.family, status=ExpertStatus.ACTIVE)
    return [e for e in experts if e.file and e.file.path and Path(e.file.path).is_file()]


def _fixed_experts(
    bench: Bench, cases: Sequence[PromptCase], options: BenchmarkOptions, settings: Settings
) -> tuple[list[str], str | None]:
    """The 'Ours fixed' set: given, configured, or the experts the ESA chose most often."""
    given = options.fixed_experts or settings.benchmark.fixed_experts
    if given:
        usable = {e.id for e in bench.pool}
        bad = [i for i in given if i not in usable]
        if bad:
            family = bench.pipeline.generator.family.value
            raise BenchmarkError(
                f"fixed experts {bad} are not active {family} experts with local weights: "
                "choose ids from `diffgraph graph list`"
            )
        return list(given), None
    counts: Counter[str] = Counter()
    most: dict[str, int] = {"ckpt": 0, "peft": 0}
    for case in cases:
        selected = bench.usable(case.selection.expert_ids)
        counts.update(e.id for e in selected)
        for kind in most:
            most[kind] = max(most[kind], sum(e.kind.value == kind for e in selected))
    order = {e.id: i for i, e in enumerate(bench.pool)}
    fixed = []
    for kind, k in most.items():
        ids = [e.id for e in bench.pool if e.kind.value == kind and counts[e.id]]
        fixed += sorted(ids, key=lambda i: (-counts[i], order[i]))[:k]
    note = (
        f"Ours fixed: no fixed set given (--fixed-experts or benchmark.fixed_experts); it "
        f"used the experts selected most often over these prompts: {', '.join(fixed) or 'none'}"
    )
    return fixed, note


def _prepare(bench: Bench, rows: Sequence[Method]) -> dict[str, str]:
    """Build each resource the rows need once; rows whose resource fails are unavailable."""
    failed: dict[str, str] = {}
    unavailable = {}
    for row in rows:
        need = row.needs
        if need is None:
            continue
        if need.key not in bench.resources and need.key not in failed:
            try:
                bench.resources[need.key] = need.build(bench)
            except DiffGraphError as exc:
                failed[need.key] = str(exc)
        if need.key in failed:
            unavailable[row.name] = failed[need.key]
    return unavailable


# -- rows --------------------------------------------------------------------------------


def _row(bench: Bench, case: PromptCase, row: Method, scoring: Scoring, tracer) -> RowResult:
    resource = bench.resources[row.needs.key].value if row.needs else None
    call = RowCall(bench, case, bench.out_dir / "images" / row.name, resource)
    try:
        made = row.run(call)
    except DiffGraphError as exc:
        tracer.error(row.name, exc, prompt=case.index)
        return RowResult(prompt_index=case.index, method=row.name, error=str(exc))
    scores = scoring.score_files(made.images, case.text)
    seeds = [case.seed + i for i in range(len(made.images))]
    result = RowResult(
        prompt_index=case.index,
        method=row.name,
        images=[
            ScoredImage(path=_relative(p, bench.out_dir), seed=s, scores=v)
            for p, s, v in zip(made.images, seeds, scores, strict=True)
        ],
        recipe=_relative(made.recipe, bench.out_dir) if made.recipe else None,
        **made.model_dump(include={"experts", "planner", "merge", "prompt_used", "demo", "notes"}),
    )
    tracer.node(row.name, inputs={"prompt": case.prompt, "seed": case.seed}, outputs=result)
    return result


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix()


# -- the report --------------------------------------------------------------------------


def _report(ctx, scoring, cases, bench, rows, unavailable, results, notes) -> BenchmarkReport:
    done = [r for r in results if r.error is None]
    common = [n for n in (done[0].notes if done else []) if all(n in r.notes for r in done)]
    summaries = [
        _summary(row, bench, unavailable, results, scoring.metrics, common) for row in rows
    ]
    backends = _backends(ctx, scoring, cases, bench)
    demo = (
        ctx.generator.demo
        or scoring.demo
        or any(r.demo for r in results)
        or any(p.demo for p in bench.resources.values())
    )
    return BenchmarkReport(
        demo=demo,
        backends=backends,
        metrics=scoring.metrics,
        unavailable_metrics=scoring.unavailable,
        prompts=[
            PromptInfo(
                index=c.index,
                prompt=c.prompt,
                text=c.text,
                seed=c.seed,
                selected=[e.id for e in bench.usable(c.selection.expert_ids)],
                selection_mode=c.selection.mode,
                gold=c.gold,
            )
            for c in cases
        ],
        fixed_experts=bench.fixed_experts,
        methods=summaries,
        rows=results,
        notes=[*common, *notes],
    )


def _summary(row: Method, bench: Bench, unavailable, results, metrics, common) -> MethodSummary:
    mine = [r for r in results if r.method == row.name]
    images = [image for r in mine for image in r.images]
    prepared = bench.resources.get(row.needs.key) if row.needs else None
    return MethodSummary(
        name=row.name,
        label=row.label,
        kind=row.kind,
        description=row.description,
        images=len(images),
        means={m: mean_of([image.scores[m] for image in images]) for m in metrics},
        source=prepared.source if prepared else None,
        unavailable=unavailable.get(row.name),
        errors=[f"prompt {r.prompt_index}: {r.error}" for r in mine if r.error],
        demo=any(r.demo for r in mine) or bool(prepared and prepared.demo),
        notes=list(dict.fromkeys(n for r in mine for n in r.notes if n not in common)),
    )


def mean_of(values: Sequence[float]) -> float | None:
    """The table's statistic: the arithmetic mean (``statistics.fmean``), None if empty."""
    return statistics.fmean(values) if values else None


def _backends(ctx, scoring, cases, bench) -> dict[str, str]:
    settings = ctx.settings
    generator = ctx.generator
    pipeline = (
        "DEMO pipeline: tiny random weights (tools.tiny); the images mean nothing"
        if generator.demo
        else f"{generator.family.value} base model {settings.base_model}"
    )
    modes = sorted({c.selection.mode for c in cases})
    selection = (
        "no-LLM mode (the deterministic policy)"
        if modes == ["no-llm"]
        else f"LLM {settings.llm.model} (modes: {', '.join(modes)})"
    )
    if scoring.suite is None:
        scorers = "none available: no metric could be scored"
    elif scoring.demo:
        scorers = (
            f"DEMO scorers: tiny random weights ({', '.join(scoring.metrics)}); the scores "
            "mean nothing"
        )
    else:
        scorers = f"local weights: {', '.join(scoring.metrics)}"
    backends = {"pipeline": pipeline, "selection": selection, "scorers": scorers}
    if any(e.demo for e in bench.pool):
        backends["experts"] = "DEMO catalogue (invented experts, tiny weights)"
    for key, prepared in bench.resources.items():
        backends[key] = prepared.source
    return backends


def to_markdown(report: BenchmarkReport) -> str:
    """The tables (methods, then ablations) with the backends and every note."""
    lines = ["# DiffGraph benchmark", ""]
    if report.demo:
        lines += [
            "> **DEMO RUN.** Parts of this run used demo backends (listed below); its numbers "
            "say nothing about image quality. With real weights (base model, scorer weights, "
            "a trained planner, an LLM) the same command reproduces the paper's setting.",
            "",
        ]
    lines += [f"- **{k}**: {v}" for k, v in report.backends.items()]
    lines += [
        f"- prompts: {len(report.prompts)}, seeds "
        f"{', '.join(str(p.seed) for p in report.prompts)} (the same in every row)",
        "",
    ]
    for kind, title in (("method", "Methods (Table 1)"), ("ablation", "Ablations")):
        rows = [m for m in report.methods if m.kind == kind]
        if rows:
            lines += [f"## {title}", "", *_table(report, rows), ""]
    lines += _footnotes(report)
    return "\n".join(lines).rstrip() + "\n"


def metric_columns(report: BenchmarkReport) -> list[str]:
    """Every requested metric: scored ones, then unavailable ones (shown as n/a)."""
    return [*report.metrics, *report.unavailable_metrics]


def format_mean(summary: MethodSummary, metric: str) -> str:
    if summary.unavailable:
        return "unavailable"
    value = summary.means.get(metric)
    return "n/a" if value is None else f"{value:.4f}"


def _table(report: BenchmarkReport, rows: Sequence[MethodSummary]) -> list[str]:
    metrics = metric_columns(report)
    header = ["Method", "images", *(METRIC_LABELS.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for summary in rows:
        label = summary.label + (" (demo)" if summary.demo else "")
        cells = [label, str(summary.images), *(format_mean(summary, m) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _footnotes(report: BenchmarkReport) -> list[str]:
    lines = []
    if report.unavailable_metrics:
        lines += ["## Metrics not scored", ""]
        lines += [f"- **{m}**: {why}" for m, why in report.unavailable_metrics.items()]
        lines.append("")
    rows = [m for m in report.methods if m.unavailable or m.errors or m.notes or m.source]
    if rows:
        lines += ["## Rows", ""]
        for m in rows:
            lines.append(f"- **{m.label}** ({m.name}): {m.description}")
            if m.source:
                lines.append(f"  - planner / resource: {m.source}")
            if m.unavailable:
                lines.append(f"  - unavailable: {m.unavailable}")
            lines += [f"  - error: {e}" for e in m.errors]
            lines += [f"  - {n}" for n in m.notes]
        lines.append("")
    if report.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in report.notes), ""]
    return lines


def _write_text(path: Path, text: str) -> None:
    from tools.weights.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
