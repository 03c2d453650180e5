"""``diffgraph eval world``: the paper's Table 1 measured in the small trained world.

The held-out suites of :mod:`tools.world.suites` (each prompt with its asked attributes and
gold experts) go through :func:`evals.benchmark.run_benchmark` (the same rows, prompts,
seeds and sampler steps for every method), and each image is then scored three ways:

- ``geneval``: the share of the prompt's asked attributes the world's judge finds (the
  world's GenEval; shape and colour are always asked, style and background when named);
- ``expert``: the share of its asked style and background found (what experts add);
- ``clip_score``: CLIPScore with the world's trained CLIP (from the benchmark's scorers);
- ``harm``: how much the judge's probability of the asked shape and colour (what no expert
  should touch) drops from the base model's image of the same prompt and seed (mean of the
  two; > 0: degraded, < 0: improved; the base row is 0).

Per suite and method: the mean with a 95 % bootstrap interval over prompts (a prompt's
seeds averaged first), and DiffGraph's paired win rate against every other row on the same
prompt and seed. The diagnosis explains a loss from the run's own records: selection recall
against gold, the planner's weight on gold experts, and merged versus single experts.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from evals.errors import BenchmarkError
from evals.stats import bootstrap_mean, recall_precision, win_rate

if TYPE_CHECKING:
    from agents.pipeline.pipeline import PipelineContext
    from evals.benchmark import BenchmarkReport
    from tools.settings import Settings
    from tools.world.suites import WorldPrompt

log = logging.getLogger(__name__)

OURS = "diffgraph"
BASE = "direct"
WORLD_METHODS = [
    "direct",
    "retrieval-single",
    "oracle-single",
    "equal",
    "random",
    "llm",
    "dare",
    "ties",
    "klora",
    "ours-fixed",
    "diffgraph",
    "autolora-top2",
]
SCORES = {
    "geneval": "GenEval (judge)",
    "expert": "expert attribute",
    "clip_score": "CLIPScore",
    "harm": "harm (shape, colour vs base)",
}
WIN_SCORES = ("geneval", "expert", "clip_score")
HARMED = ("shape", "colour")


class WorldTableOptions(BaseModel):
    """Which prompts and rows, and how many seeds."""

    suites: list[str] = Field(
        default_factory=lambda: ["single", "compositional", "plain", "unusual"]
    )
    per_suite: int | None = Field(None, ge=1, description="the first N prompts of each suite")
    small: bool = Field(False, description="three prompts (tools.world.suites.small_table_prompts)")
    methods: list[str] = Field(default_factory=lambda: list(WORLD_METHODS))
    seeds: int = Field(4, ge=1, le=16, description="images per prompt and row")
    seed: int = Field(0, ge=0, description="prompt i's images use seeds seed + i, ...")
    steps: int | None = Field(None, ge=1, le=500, description="default: the world's (20)")
    train_steps: int | None = Field(
        None, ge=1, description="train missing planner variants this long (synthetic reward)"
    )
    resamples: int = Field(2000, ge=1)
    skip_missing: bool = Field(
        False, description="leave out prompts whose gold experts the graph lacks (and say so)"
    )


class ImageScores(BaseModel):
    prompt_index: int
    method: str
    seed: int
    path: str
    found: dict[str, str] = Field(description="the judge's reading of each attribute")
    scores: dict[str, float | None]


class Cell(BaseModel):
    mean: float
    low: float
    high: float
    n: int


class MethodRow(BaseModel):
    method: str
    label: str
    images: int
    cells: dict[str, Cell | None]
    hits: dict[str, float | None] = Field(description="per asked attribute: found share")
    unavailable: str | None = None


class Win(BaseModel):
    baseline: str
    score: str
    wins: int
    ties: int
    losses: int
    rate: float | None


class Diagnosis(BaseModel):
    recall: float
    precision: float
    selected_per_prompt: float
    exact_selections: int
    missed: dict[str, int] = Field(description="gold expert → prompts whose selection missed it")
    extra: dict[str, int] = Field(description="non-gold expert → prompts that selected it")
    gold_weight_share: float | None = Field(description="DiffGraph's merge weight on gold experts")
    weights_fixed: int = Field(
        description="prompts whose selection has at most one LoRA and one checkpoint: merge "
        "weights are softmax shares within each kind, so the planner cannot change them"
    )
    lines: list[str]


class SuiteTable(BaseModel):
    suite: str
    prompts: int
    rows: list[MethodRow]
    wins: list[Win]
    diagnosis: Diagnosis


class PromptRecord(BaseModel):
    index: int
    text: str
    suite: str
    wording: str
    asked: dict[str, str]
    gold: list[str] = Field(description="expert slugs")
    gold_ids: list[str]
    selected: list[str]


class WorldTable(BaseModel):
    """Everything measured; the Markdown, BENCHMARKS.md section and HTML are views of it."""

    options: WorldTableOptions
    backends: dict[str, str]
    prompts: list[PromptRecord]
    labels: dict[str, str]
    names: dict[str, str] = Field(description="graph expert id → world expert slug")
    suites: list[SuiteTable]
    images: list[ImageScores]
    notes: list[str]
    seconds: float = 0.0
    files: dict[str, str] = Field(default_factory=dict)


def chosen_prompts(options: WorldTableOptions) -> list[WorldPrompt]:
    from tools.world.suites import SUITES, small_table_prompts, table_prompts

    unknown = sorted(set(options.suites) - set(SUITES))
    if unknown:
        raise BenchmarkError(f"unknown suite(s) {unknown}: expected some of {list(SUITES)}")
    if options.small:
        return small_table_prompts()
    out = []
    for suite in options.suites:
        mine = [p for p in table_prompts() if p.suite == suite]
        out += mine[: options.per_suite] if options.per_suite else mine
    return out


def world_expert_ids(ctx: PipelineContext) -> dict[str, str]:
    """Slug → id of the active graph expert crawled from the world catalogue."""
    from graph.records import ExpertStatus
    from tools.world.catalogue import world_models

    by_model = {str(m.id): m.slug for m in world_models()}
    found = {}
    for expert in ctx.graph.store.experts(status=ExpertStatus.ACTIVE):
        slug = by_model.get(expert.source.model_id or "")
        if slug and expert.source.platform == "demo":
            found[slug] = expert.id
    return found


def run_world_table(
    settings: Settings,
    options: WorldTableOptions,
    out_dir: Path,
    ctx: PipelineContext | None = None,
) -> WorldTable:
    """Run the rows on the suites, score every image, write JSON, Markdown and HTML.

    ``settings`` must already be the world's (:func:`agents.demo.world.world_settings`) and
    its graph must hold the crawled world catalogue (``diffgraph demo`` builds it).
    """
    import time

    from agents.pipeline.context import build_context
    from evals.benchmark import BenchmarkOptions, run_benchmark
    from evals.world_report import write_outputs

    start = time.perf_counter()
    prompts = chosen_prompts(options)
    owned = ctx is None
    ctx = ctx or build_context(settings, planner="equal")
    try:
        ids = world_expert_ids(ctx)
        prompts, skipped = _available(prompts, ids, options.skip_missing)
        needed = sorted({slug for p in prompts for slug in p.gold} - set(ids))
        fix = (
            "run `diffgraph demo` with the same data folder first (it crawls and calibrates "
            "the world catalogue and trains the planner)"
        )
        if needed:
            raise BenchmarkError(
                f"the graph at {settings.data_dir} lacks the world experts {needed}: {fix}"
            )
        if not prompts:
            raise BenchmarkError(
                f"the graph at {settings.data_dir} lacks the gold experts of every chosen "
                f"prompt: {fix}"
            )
        methods, notes = _methods(options.methods, settings)
        if skipped:
            notes.append(
                f"{skipped} prompt(s) left out: the graph lacks their gold experts "
                "(--skip-missing; crawl the whole world catalogue to run them)"
            )
        bench = BenchmarkOptions(
            methods=methods,
            seed=options.seed,
            width=32,
            height=32,
            steps=options.steps,
            images=options.seeds,
            train_steps=options.train_steps,
            metrics=["clip_score"],
        )
        gold = [[ids[s] for s in p.gold] for p in prompts]
        texts = [p.text for p in prompts]
        report = run_benchmark(settings, texts, bench, Path(out_dir), ctx=ctx, gold=gold)
    finally:
        if owned:
            ctx.graph.close()
    images = score_images(report, prompts, Path(out_dir), settings.scorers.world_judge)
    names = {i: slug for slug, i in ids.items()}
    table = summarise(report, prompts, gold, images, options, notes, names)
    table.seconds = round(time.perf_counter() - start, 1)
    write_outputs(table, Path(out_dir))
    return table


def _available(
    prompts: list[WorldPrompt], ids: dict[str, str], skip_missing: bool
) -> tuple[list[WorldPrompt], int]:
    """The prompts to run and how many were left out for lack of their gold experts."""
    if not skip_missing:
        return prompts, 0
    kept = [p for p in prompts if set(p.gold) <= set(ids)]
    return kept, len(prompts) - len(kept)


def _methods(wanted: Sequence[str], settings: Settings) -> tuple[list[str], list[str]]:
    """The rows to run (the base always: harm is measured against it) and what was left out."""
    methods = list(dict.fromkeys([BASE, *wanted]))
    notes = []
    if "llm" in methods and not settings.llm.configured:
        methods.remove("llm")
        notes.append(
            "LLM weights: skipped, no LLM is configured (set [llm] or OPENAI_BASE_URL / "
            "OPENAI_MODEL to run that row)"
        )
    return methods, notes


# -- scoring -----------------------------------------------------------------------------


def score_images(
    report: BenchmarkReport, prompts: Sequence[WorldPrompt], out_dir: Path, judge_path: Path
) -> list[ImageScores]:
    """The judge's scores of every image, with harm against the base image of its seed."""
    import torch

    from evals.scoring import read_images
    from tools.world.evaluate import load_world_judge
    from tools.world.vocab import ATTRIBUTES

    judge = load_world_judge(Path(judge_path))
    flat = [(row, image) for row in report.rows for image in row.images]
    if not flat:
        return []
    pixels = read_images([out_dir / image.path for _, image in flat])
    with torch.no_grad():
        probs = judge.probabilities(pixels)
    out = []
    for i, (row, image) in enumerate(flat):
        asked = prompts[row.prompt_index].asked
        found = {a: ATTRIBUTES[a][int(probs[a][i].argmax())] for a in ATTRIBUTES}
        hits = {a: float(found[a] == v) for a, v in asked.items()}
        experts = [hits[a] for a in ("style", "background") if a in asked]
        likely = {a: float(probs[a][i, ATTRIBUTES[a].index(asked[a])]) for a in HARMED}
        out.append(
            ImageScores(
                prompt_index=row.prompt_index,
                method=row.method,
                seed=image.seed,
                path=image.path,
                found=found,
                scores={
                    "geneval": statistics.fmean(hits.values()),
                    "expert": statistics.fmean(experts) if experts else None,
                    "clip_score": image.scores.get("clip_score"),
                    **{f"p_{a}": p for a, p in likely.items()},
                },
            )
        )
    base = {(s.prompt_index, s.seed): s for s in out if s.method == BASE}
    for s in out:
        ref = base.get((s.prompt_index, s.seed))
        s.scores["harm"] = (
            None
            if ref is None
            else statistics.fmean(ref.scores[f"p_{a}"] - s.scores[f"p_{a}"] for a in HARMED)
        )
    return out


# -- statistics per suite ----------------------------------------------------------------


def summarise(
    report: BenchmarkReport,
    prompts: Sequence[WorldPrompt],
    gold: Sequence[Sequence[str]],
    images: Sequence[ImageScores],
    options: WorldTableOptions,
    notes: Sequence[str],
    names: dict[str, str],
) -> WorldTable:
    records = [
        PromptRecord(
            index=i,
            text=p.text,
            suite=p.suite,
            wording=p.wording,
            asked=p.asked,
            gold=list(p.gold),
            gold_ids=list(gold[i]),
            selected=report.prompts[i].selected,
        )
        for i, p in enumerate(prompts)
    ]
    labels = {m.name: m.label for m in report.methods}
    suites = [
        _suite(suite, [r for r in records if r.suite == suite], report, images, options)
        for suite in dict.fromkeys(r.suite for r in records)
    ]
    notes = list(notes)
    if "autolora" in report.backends:
        notes.append(
            "AutoLoRA rows: the encoder and gates `diffgraph train-autolora` trained on this "
            "graph; its gates learn from images each LoRA generates (not the LoRA's training "
            "images), and its DEMO label is the demo platform's flag on the world experts"
        )
    backends = dict(report.backends)
    if "experts" in backends:  # the benchmark's word for demo-platform experts
        backends["experts"] = (
            "the world catalogue on the local demo platform: experts trained on the world's "
            "images (tools/world/weights/experts), not invented"
        )
    return WorldTable(
        options=options,
        backends=backends,
        prompts=records,
        labels=labels,
        names=names,
        suites=suites,
        images=list(images),
        notes=[*notes, *report.notes],
    )


def _suite(
    suite: str,
    records: Sequence[PromptRecord],
    report: BenchmarkReport,
    images: Sequence[ImageScores],
    options: WorldTableOptions,
) -> SuiteTable:
    by_index = records_by(records)
    mine = [s for s in images if s.prompt_index in by_index]
    rows = []
    for method in report.methods:
        theirs = [s for s in mine if s.method == method.name]
        hits: dict[str, float | None] = {}
        for attribute in ("shape", "colour", "style", "background"):
            found = [
                float(s.found[attribute] == asked[attribute])
                for s in theirs
                if attribute in (asked := by_index[s.prompt_index].asked)
            ]
            hits[attribute] = statistics.fmean(found) if found else None
        rows.append(
            MethodRow(
                method=method.name,
                label=method.label,
                images=len(theirs),
                cells={score: _cell(theirs, score, options.resamples) for score in SCORES},
                hits=hits,
                unavailable=method.unavailable,
            )
        )
    wins = _wins(mine, [m.name for m in report.methods])
    return SuiteTable(
        suite=suite,
        prompts=len(records),
        rows=rows,
        wins=wins,
        diagnosis=_diagnose(records, report, rows, wins),
    )


def records_by(records: Sequence[PromptRecord]) -> dict[int, PromptRecord]:
    return {r.index: r for r in records}


def _cell(images: Sequence[ImageScores], score: str, resamples: int) -> Cell | None:
    """Mean over prompts of each prompt's mean over its seeds, with its bootstrap interval."""
    per_prompt: dict[int, list[float]] = {}
    for s in images:
        value = s.scores.get(score)
        if value is not None:
            per_prompt.setdefault(s.prompt_index, []).append(value)
    if not per_prompt:
        return None
    means = [statistics.fmean(v) for _, v in sorted(per_prompt.items())]
    interval = bootstrap_mean(means, resamples=resamples)
    return Cell(mean=interval.mean, low=interval.low, high=interval.high, n=interval.n)


def _wins(images: Sequence[ImageScores], methods: Sequence[str]) -> list[Win]:
    """DiffGraph against every other row, image by image (same prompt and seed)."""
    by_key = {(s.method, s.prompt_index, s.seed): s for s in images}
    ours = [s for s in images if s.method == OURS]
    out = []
    for baseline in methods:
        if baseline == OURS:
            continue
        for score in WIN_SCORES:
            pairs = [
                (s.scores[score], other.scores[score])
                for s in ours
                if (other := by_key.get((baseline, s.prompt_index, s.seed))) is not None
                and s.scores.get(score) is not None
                and other.scores.get(score) is not None
            ]
            if not pairs:
                continue
            w = win_rate([a for a, _ in pairs], [b for _, b in pairs])
            out.append(Win(baseline=baseline, score=score, wins=w.wins, ties=w.ties,
                           losses=w.losses, rate=w.rate))  # fmt: skip
    return out


# -- why DiffGraph wins or not -----------------------------------------------------------


def _diagnose(
    records: Sequence[PromptRecord],
    report: BenchmarkReport,
    rows: Sequence[MethodRow],
    wins: Sequence[Win],
) -> Diagnosis:
    recalls, precisions, sizes = [], [], []
    missed: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    exact = 0
    for r in records:
        recall, precision = recall_precision(r.selected, r.gold_ids)
        recalls.append(recall)
        precisions.append(precision)
        sizes.append(len(r.selected))
        exact += set(r.selected) == set(r.gold_ids)
        missed.update(i for i in r.gold_ids if i not in r.selected)
        extra.update(i for i in r.selected if i not in r.gold_ids)
    by_index = records_by(records)
    shares = []
    fixed = 0
    for row in report.rows:
        if row.method != OURS or row.prompt_index not in by_index:
            continue
        kinds = Counter(e.kind for e in row.experts)
        fixed += kinds["peft"] <= 1 and kinds["ckpt"] <= 1
        if not row.experts:
            continue
        gold = set(by_index[row.prompt_index].gold_ids)
        total = sum(e.merge_weight or 0.0 for e in row.experts)
        if total > 0:
            shares.append(
                sum(e.merge_weight or 0.0 for e in row.experts if e.expert_id in gold) / total
            )
    diagnosis = Diagnosis(
        recall=statistics.fmean(recalls),
        precision=statistics.fmean(precisions),
        selected_per_prompt=statistics.fmean(sizes),
        exact_selections=exact,
        missed=dict(missed.most_common()),
        extra=dict(extra.most_common()),
        gold_weight_share=statistics.fmean(shares) if shares else None,
        weights_fixed=fixed,
        lines=[],
    )
    diagnosis.lines = _why(diagnosis, {row.method: row for row in rows}, wins, len(records))
    return diagnosis


def _mean(rows: dict[str, MethodRow], method: str, score: str = "geneval") -> float | None:
    row = rows.get(method)
    cell = row.cells.get(score) if row else None
    return cell.mean if cell else None


def _why(d: Diagnosis, rows: dict[str, MethodRow], wins: Sequence[Win], n: int) -> list[str]:
    """Sentences naming where DiffGraph loses and which stage the run's numbers blame."""
    lost = [w for w in wins if w.score == "geneval" and w.rate is not None and w.rate <= 0.5]
    ours = _mean(rows, OURS)
    if ours is None:
        return ["DiffGraph did not run here: nothing to explain"]
    lines = []
    if lost:
        names = ", ".join(f"{rows[w.baseline].label} ({w.rate:.0%})" for w in lost)
        lines.append(f"DiffGraph does not beat on GenEval (win rate, ties half): {names}.")
    else:
        lines.append("DiffGraph's GenEval win rate is above 50 % against every row.")
    versus_base = next((w for w in wins if w.baseline == BASE and w.score == "expert"), None)
    expert_ours, expert_base = _mean(rows, OURS, "expert"), _mean(rows, BASE, "expert")
    harm = _mean(rows, OURS, "harm")
    if (
        versus_base
        and versus_base.rate is not None
        and None not in (expert_ours, expert_base, harm)
    ):
        lines.append(
            f"What experts add: DiffGraph's images show the asked style / background in "
            f"{expert_ours:.0%} against the base's {expert_base:.0%} (win rate "
            f"{versus_base.rate:.0%}), at a harm of {harm:+.3f} on shape and colour."
        )
    lines.append(
        f"Selection against gold: recall {d.recall:.2f}, precision {d.precision:.2f}, "
        f"{d.selected_per_prompt:.1f} experts a prompt, exactly the gold set in "
        f"{d.exact_selections}/{n} prompts."
    )
    fixed = _mean(rows, "ours-fixed")
    if fixed is not None:
        lines.append(
            f"Selection: the same planner over the gold experts (Ours fixed) scores {fixed:.3f} "
            f"against DiffGraph's {ours:.3f} ({_signed(fixed - ours)} from perfect selection)."
        )
    if d.weights_fixed:
        lines.append(
            f"In {d.weights_fixed}/{n} prompts DiffGraph merges at most one LoRA and one "
            "checkpoint: merge weights are softmax shares within each kind, so there any "
            "weighting gives the same image (DiffGraph = Equal = Random)."
        )
    equal = _mean(rows, "equal")
    if equal is not None:
        share = (
            f"; DiffGraph puts {d.gold_weight_share:.0%} of its merge weight on gold experts"
            if d.gold_weight_share is not None
            else ""
        )
        lines.append(
            f"Planner: equal weights over the same selection score {equal:.3f} "
            f"({_signed(ours - equal)} from the planner's weights{share})."
        )
    single = _mean(rows, "oracle-single")
    if single is not None and fixed is not None:
        lines.append(
            f"Merge: one gold expert alone scores {single:.3f}, all gold experts merged "
            f"{fixed:.3f} ({_signed(fixed - single)} from merging more experts)."
        )
    base = _mean(rows, BASE)
    expert_base, expert_single = _mean(rows, BASE, "expert"), _mean(rows, "oracle-single", "expert")
    if base is not None and single is not None:
        detail = (
            f"; the asked style or background is found in {expert_single:.0%} of its images "
            f"against {expert_base:.0%} for the base"
            if expert_single is not None and expert_base is not None
            else ""
        )
        lines.append(
            f"Experts: the base scores {base:.3f}, the right expert alone {single:.3f}{detail}."
        )
    return lines


def _signed(value: float) -> str:
    return f"{value:+.3f}"
