"""`diffgraph eval world` in small: three world prompts, one seed, a few rows, real judge."""

from __future__ import annotations

import json
import statistics

import pytest

from evals.stats import recall_precision
from evals.world_table import WorldTableOptions, run_world_table
from tools.settings import Settings


@pytest.fixture(scope="module")
def world_ctx(tmp_path_factory, embedder):
    """A graph of the world's experts (records written directly, as a crawl would) and the
    pipeline on the world's base model, judge and CLIP."""
    from agents.demo.world import world_settings
    from agents.pipeline.pipeline import PipelineContext
    from agents.selection.graph import make_context
    from graph.records import BaseFamily, Calibration, Expert, ExpertKind, Source, WeightFile
    from graph.universal import UniversalGraph
    from planner.planners import EqualPlanner
    from tools.generation.generator import Generator
    from tools.world import WORLD_DIR
    from tools.world.catalogue import world_models
    from tools.world.experts import EXPERTS
    from tools.world.prompts import reference_prompts

    root = tmp_path_factory.mktemp("world-table")
    settings = world_settings(Settings(data_dir=root / "data"), WORLD_DIR)
    settings.planner.batch_size = 2
    models = {m.slug: m for m in world_models()}
    experts = [
        Expert(
            id=f"world-{spec.slug}",
            kind=ExpertKind.PEFT if spec.kind == "lora" else ExpertKind.CKPT,
            base=BaseFamily.SD15,
            name=spec.name,
            description=f"{spec.name}: {spec.summary} {spec.skill_text}",
            trigger_words=list(spec.trigger_words),
            source=Source(platform="demo", model_id=str(models[spec.slug].id)),
            file=WeightFile(path=str(WORLD_DIR / "experts" / spec.file_name)),
            demo=True,
        )
        for spec in EXPERTS
        if spec.kind == "lora"  # checkpoints are the slow part; no small prompt needs one
    ]
    graph = UniversalGraph(settings.graph, embedder=embedder)
    graph.add_experts(experts)
    refs = graph.add_reference_prompts(reference_prompts()[:3])
    graph.set_calibrations(  # invented scores: the planner only needs edges to read
        Calibration(expert_id=e.id, ref_id=r.id, scores={"world_judge": 0.1 * (i % 5) + 0.05 * j})
        for i, e in enumerate(experts)
        for j, r in enumerate(refs)
    )
    yield PipelineContext(
        settings=settings,
        graph=graph,
        selection=make_context(settings, graph),
        planner=EqualPlanner(),
        generator=Generator.from_path(settings.base_model),
    )
    graph.close()


@pytest.fixture(scope="module")
def table(world_ctx, tmp_path_factory):
    out = tmp_path_factory.mktemp("world-table-out")
    options = WorldTableOptions(
        small=True,
        seeds=1,
        steps=4,
        methods=["retrieval-single", "oracle-single", "equal", "llm", "ours-fixed", "diffgraph"],
        train_steps=2,
        resamples=200,
    )
    return run_world_table(world_ctx.settings, options, out, ctx=world_ctx), out


def test_every_row_runs_on_the_three_suites(table):
    result, _ = table
    assert [s.suite for s in result.suites] == ["single", "compositional", "plain"]
    for suite in result.suites:
        assert suite.prompts == 1
        assert [r.method for r in suite.rows] == [
            "direct",
            "retrieval-single",
            "oracle-single",
            "equal",
            "ours-fixed",
            "diffgraph",
        ]
        assert all(r.images == 1 and r.unavailable is None for r in suite.rows)
    assert any("LLM weights: skipped" in n for n in result.notes)  # no LLM configured
    assert [p.gold for p in result.prompts] == [
        ["sketch-lines"],
        ["sketch-lines", "stripe-field"],
        [],
    ]
    assert next(p.gold_ids for p in result.prompts) == ["world-sketch-lines"]


def test_scores_follow_their_definitions(table):
    result, _ = table
    by_prompt = {p.index: p for p in result.prompts}
    for image in result.images:
        asked = by_prompt[image.prompt_index].asked
        hits = [image.found[a] == v for a, v in asked.items()]
        assert image.scores["geneval"] == sum(hits) / len(hits)
        expert = [image.found[a] == asked[a] for a in ("style", "background") if a in asked]
        assert image.scores["expert"] == (sum(expert) / len(expert) if expert else None)
        if image.method == "direct":
            assert image.scores["harm"] == 0.0
        base = next(
            s
            for s in result.images
            if s.method == "direct" and s.prompt_index == image.prompt_index
        )
        assert image.scores["harm"] == pytest.approx(
            statistics.fmean(
                base.scores[f"p_{a}"] - image.scores[f"p_{a}"] for a in ("shape", "colour")
            )
        )
    for suite in result.suites:
        for row in suite.rows:
            mine = [
                s
                for s in result.images
                if s.method == row.method and by_prompt[s.prompt_index].suite == suite.suite
            ]
            cell = row.cells["geneval"]
            assert cell.mean == cell.low == cell.high == mine[0].scores["geneval"]  # one image


def test_gold_and_retrieval_rows_merge_what_they_say_and_wins_are_paired(table):
    result, out = table
    saved = json.loads((out / "benchmark.json").read_text())
    oracle = [r for r in saved["rows"] if r["method"] == "oracle-single"]
    assert [[e["expert_id"] for e in r["experts"]] for r in oracle] == [
        ["world-sketch-lines"],
        ["world-sketch-lines"],
        [],
    ]
    gold = [p.gold_ids for p in result.prompts]
    fixed = [r for r in saved["rows"] if r["method"] == "ours-fixed"]
    assert [[e["expert_id"] for e in r["experts"]] for r in fixed] == gold
    for r in (r for r in saved["rows"] if r["method"] == "retrieval-single"):
        assert len(r["experts"]) == 1
        assert (
            f"retrieved by description embedding: {r['experts'][0]['expert_id']}" in r["notes"][-1]
        )
    for suite in result.suites:
        assert {(w.baseline, w.score) for w in suite.wins} == {
            (b, s)
            for b in ("direct", "retrieval-single", "oracle-single", "equal", "ours-fixed")
            for s in ("geneval", "expert", "clip_score")
            if s != "expert" or suite.suite != "plain"  # plain prompts ask no expert attribute
        }
        assert all(w.wins + w.ties + w.losses == 1 for w in suite.wins)
        prompt = next(p for p in result.prompts if p.suite == suite.suite)
        recall, precision = recall_precision(prompt.selected, prompt.gold_ids)
        assert (suite.diagnosis.recall, suite.diagnosis.precision) == (recall, precision)
        assert any(line.startswith("Selection against gold") for line in suite.diagnosis.lines)
        ours = next(
            r
            for r in saved["rows"]
            if r["method"] == "diffgraph" and r["prompt_index"] == prompt.index
        )
        kinds = [e["kind"] for e in ours["experts"]]
        one_each = kinds.count("peft") <= 1 and kinds.count("ckpt") <= 1
        assert suite.diagnosis.weights_fixed == one_each
    assert "(2 REINFORCE steps, synthetic reward, 3 prompts)" in result.backends["planner:full"]


def test_report_files(table):
    from PIL import Image

    result, out = table
    markdown = (out / "world-table.md").read_text()
    assert "SMALL WORLD" in markdown and "### compositional: 1 prompts × 1 seeds" in markdown
    assert "| DiffGraph |" in markdown and "GenEval (judge)" in markdown
    html = (out / "world-table.html").read_text()
    assert html.count("<section id='suite-") == 3 and "charts/plain.png" in html
    assert (out / result.files["chart:single"]).is_file()
    shown = next(s for s in result.images if s.method == "diffgraph" and s.prompt_index == 0)
    assert f"report-images/{shown.path}" in html
    with Image.open(out / "report-images" / shown.path) as big:
        assert big.size == (96, 96)  # 32×32, nearest-neighbour ×3
    assert json.loads((out / "world-table.json").read_text())["options"]["seeds"] == 1


def test_missing_world_experts_are_named_with_the_fix(world_ctx, tmp_path):
    from dataclasses import replace

    from evals.errors import BenchmarkError
    from graph.universal import UniversalGraph

    empty = world_ctx.settings.model_copy(update={"data_dir": tmp_path / "data"})
    graph = UniversalGraph(empty.graph, embedder=world_ctx.graph.embedder)
    try:
        ctx = replace(world_ctx, settings=empty, graph=graph)
        with pytest.raises(BenchmarkError, match="diffgraph demo"):
            run_world_table(empty, WorldTableOptions(small=True, seeds=1), tmp_path, ctx=ctx)
    finally:
        graph.close()


def test_skip_missing_runs_the_prompts_the_graph_can_serve_and_says_what_it_left_out(
    world_ctx, tmp_path
):
    from dataclasses import replace

    from graph.universal import UniversalGraph

    empty = world_ctx.settings.model_copy(update={"data_dir": tmp_path / "data"})
    graph = UniversalGraph(empty.graph, embedder=world_ctx.graph.embedder)
    try:
        ctx = replace(world_ctx, settings=empty, graph=graph)
        options = WorldTableOptions(
            small=True, skip_missing=True, seeds=1, steps=2, methods=["equal"], resamples=10
        )
        result = run_world_table(empty, options, tmp_path / "out", ctx=ctx)
    finally:
        graph.close()
    assert [p.suite for p in result.prompts] == ["plain"]  # the only one needing no expert
    assert any("2 prompt(s) left out" in n for n in result.notes)


def test_cli_names_the_missing_world(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from main import app

    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["eval", "world", "--small", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "diffgraph demo" in result.stderr
    bad = CliRunner().invoke(app, ["eval", "world", "--suites", "fancy", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown suite(s) ['fancy']" in bad.stderr
