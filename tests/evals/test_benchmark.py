"""`diffgraph eval benchmark` on the tiny backends: table, gallery, means, honesty, repeats."""

from __future__ import annotations

import json
import statistics

import pytest

from evals.benchmark import BenchmarkOptions, run_benchmark
from evals.methods import DEFAULT_METHODS
from graph.records import Calibration
from tools.settings import Settings

# One checkpoint only: checkpoint merges are the slow part on the tiny backends.
EXPERTS = [
    ("ckpt-anime", "ckpt", "anime style illustrations with bold outlines", []),
    ("lora-red-hair", "peft", "vivid red hair with detailed strands", ["redhair"]),
    ("lora-watercolor", "peft", "watercolor painting style with soft washes", ["wcstyle"]),
    ("lora-castle", "peft", "medieval castles on hills", []),
]
PROMPTS = [
    "a portrait of a woman with red hair, watercolor",
    "a medieval castle on a hill at sunset",
    "an anime girl with red hair",
]
REFERENCES = ["a woman with red hair", "a castle in the mountains", "a watercolor landscape"]
ABLATIONS = ["no-esa", "random-activation", "no-calibration"]
# the rows with randomness in them (coefficients, DARE masks, training, expert draws)
RANDOM_ROWS = ["random", "dare", "diffgraph", "random-activation"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sd15, tiny_sd15_files, embedder):
    """A calibrated graph of tiny experts with real weight files, and the loaded pipeline."""
    from graph.universal import UniversalGraph
    from tests.support.tiny_experts import tiny_experts, tiny_pipeline

    root = tmp_path_factory.mktemp("benchmark")
    settings = Settings(data_dir=root / "data", base_model=tiny_sd15_files.folder)
    settings.generation.steps = 2
    settings.planner.batch_size = 3
    experts = tiny_experts(tiny_sd15, root, EXPERTS)
    graph = UniversalGraph(settings.graph, embedder=embedder)
    graph.add_experts(experts)
    refs = graph.add_reference_prompts(REFERENCES)
    graph.set_calibrations(
        Calibration(
            expert_id=e.id,
            ref_id=r.id,
            scores={"clip_score": 20.0 + i + 0.5 * j, "aesthetic": 5.0 - 0.1 * i * j},
        )
        for i, e in enumerate(experts)
        for j, r in enumerate(refs)
    )
    yield tiny_pipeline(settings, graph, tiny_sd15_files.folder)
    graph.close()


def options(**kw) -> BenchmarkOptions:
    return BenchmarkOptions(
        ablations=ABLATIONS, width=64, height=64, train_steps=3, demo_scorers=True, **kw
    )


@pytest.fixture(scope="module")
def runs(world, tmp_path_factory):
    """The benchmark, then its rows with randomness again into another folder."""
    first = tmp_path_factory.mktemp("bench-a")
    second = tmp_path_factory.mktemp("bench-b")
    a = run_benchmark(world.settings, PROMPTS, options(), first, ctx=world)
    again = options().model_copy(update={"methods": RANDOM_ROWS[:3], "ablations": RANDOM_ROWS[3:]})
    b = run_benchmark(world.settings, PROMPTS, again, second, ctx=world)
    return (a, first), (b, second)


def test_table_means_are_the_means_of_the_image_scores(runs):
    (report, out), _ = runs
    assert [m.name for m in report.methods] == DEFAULT_METHODS + ABLATIONS
    assert report.metrics == ["clip_score", "aesthetic"]
    saved = json.loads((out / "benchmark.json").read_text())
    for summary in saved["methods"]:
        assert summary["unavailable"] is None and not summary["errors"], summary
        rows = [r for r in saved["rows"] if r["method"] == summary["name"]]
        assert [r["prompt_index"] for r in rows] == [0, 1, 2]
        assert summary["images"] == 3
        for metric in report.metrics:
            values = [image["scores"][metric] for r in rows for image in r["images"]]
            assert summary["means"][metric] == statistics.fmean(values)


def test_rows_share_seed_and_selection_and_differ_as_designed(runs):
    (report, out), _ = runs
    rows = {(r.prompt_index, r.method): r for r in report.rows}
    for prompt in report.prompts:
        assert prompt.seed == prompt.index
        assert prompt.selection_mode == "no-llm"
        for method in DEFAULT_METHODS + ABLATIONS:
            row = rows[(prompt.index, method)]
            assert [image.seed for image in row.images] == [prompt.seed]
            assert (out / row.images[0].path).is_file()
        assert rows[(prompt.index, "direct")].experts == []
        selected = prompt.selected
        assert selected, "the no-LLM policy selects experts for every test prompt"
        for method in ("equal", "random", "llm", "dare", "ties", "diffgraph", "no-calibration"):
            assert [e.expert_id for e in rows[(prompt.index, method)].experts] == selected
        assert rows[(prompt.index, "dare")].merge == "dare"
        assert rows[(prompt.index, "ties")].merge == "ties"
        equal = rows[(prompt.index, "equal")]
        loras = [e for e in equal.experts if e.kind == "peft"]
        assert [e.merge_weight for e in loras] == pytest.approx([1 / len(loras)] * len(loras))
        fixed = [e.expert_id for e in rows[(prompt.index, "ours-fixed")].experts]
        assert fixed == report.fixed_experts
        no_esa = {e.expert_id for e in rows[(prompt.index, "no-esa")].experts}
        assert no_esa == {e[0] for e in EXPERTS}
    # different merges of the same experts and seed give different images and scores
    first = [rows[(0, m)].images[0].scores["aesthetic"] for m in ("direct", "equal", "ties")]
    assert len(set(first)) == 3


def test_demo_labelling(runs):
    (report, out), _ = runs
    assert report.demo
    assert "tiny random weights" in report.backends["pipeline"]
    assert "no-LLM" in report.backends["selection"]
    assert report.backends["scorers"].startswith("DEMO scorers")
    assert "synthetic reward: demo" in report.backends["planner:full"]
    assert "no-LLM" in report.backends["planner:llm"]
    assert report.summary("diffgraph").demo
    markdown = (out / "benchmark.md").read_text()
    assert "DEMO RUN" in markdown
    assert "| DiffGraph (demo) | 3 |" in markdown
    assert "## Ablations" in markdown and "| w/o calibration (demo) | 3 |" in markdown
    gallery = (out / "gallery.html").read_text()
    assert "DEMO RUN" in gallery
    for row in report.rows:
        assert f"src='{row.images[0].path}'" in gallery
    assert gallery.count("<section id='prompt-") == 3
    assert "lora-red-hair" in gallery and "coef." in gallery


def test_two_runs_are_identical(runs):
    (a, out_a), (b, out_b) = runs
    rows_a = [r for r in a.rows if r.method in RANDOM_ROWS]
    assert [r.model_dump(exclude={"recipe"}) for r in rows_a] == [
        r.model_dump(exclude={"recipe"}) for r in b.rows
    ]
    assert [a.summary(m.name).means for m in b.methods] == [m.means for m in b.methods]
    for row in b.rows:
        path = row.images[0].path
        assert (out_a / path).read_bytes() == (out_b / path).read_bytes()


def test_unavailable_rows_and_metrics_are_reported(world, tmp_path):
    """No planner checkpoint and no training: learned rows are unavailable; a metric
    without weights is listed with its reason, and the others are still scored."""
    report = run_benchmark(
        world.settings,
        PROMPTS[:1],
        BenchmarkOptions(
            methods=["direct", "diffgraph"],
            width=64,
            height=64,
            demo_scorers=True,
            metrics=["clip_score", "image_reward"],
        ),
        tmp_path,
        ctx=world,
    )
    assert report.metrics == ["clip_score"]
    assert "no demo scorer" in report.unavailable_metrics["image_reward"]
    diffgraph = report.summary("diffgraph")
    assert "--train-steps" in diffgraph.unavailable and diffgraph.images == 0
    assert report.summary("direct").images == 1
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "| DiffGraph | 0 | unavailable | unavailable |" in markdown
    assert "image_reward" in markdown


def test_benchmark_cli(world, tmp_path, monkeypatch, tiny_sd15_files):
    from typer.testing import CliRunner

    from main import app

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    import shutil

    data_dir = shutil.copytree(world.settings.data_dir, tmp_path / "data")  # its own Chroma
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DIFFGRAPH_BASE_MODEL", str(tiny_sd15_files.folder))
    monkeypatch.setenv("DIFFGRAPH_GENERATION__STEPS", "2")
    out = tmp_path / "out"
    args = ["eval", "benchmark", "--prompts", str(prompts), "--n", "1", "--size", "64x64"]
    result = CliRunner().invoke(
        app,
        [
            *args,
            "--methods",
            "direct,ties",
            "--merge-param",
            "ties.density=0.5",
            "--demo-scorers",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["demo"] and [m["name"] for m in data["methods"]] == ["direct", "ties"]
    assert data["rows"][1]["merge"] == "ties {'density': 0.5}"
    assert (out / "gallery.html").is_file() and (out / "benchmark.md").is_file()

    bad = CliRunner().invoke(app, [*args, "--methods", "best"])
    assert bad.exit_code == 2 and "unknown row(s) ['best']" in bad.stderr
    bad = CliRunner().invoke(app, [*args, "--merge-param", "ties.density=2"])
    assert bad.exit_code == 2 and "density" in bad.stderr
    bad = CliRunner().invoke(app, [*args, "--planner-checkpoint", "fulll=x.safetensors"])
    assert bad.exit_code == 2 and "unknown variant(s) ['fulll']" in bad.stderr


def test_autolora_rows(world, tmp_path):
    """The AutoLoRA rows plug into the registry: unavailable until AutoLoRA is trained,
    then gated-fusion images of the retrieved (or selected) LoRAs, labelled demo."""
    from dataclasses import replace

    from tools.autolora.train import train_encoder_on_graph, train_fusion_on_graph

    settings = world.settings.model_copy(deep=True)
    settings.autolora = settings.autolora.model_copy(
        update={
            "d_model": 32,
            "layers": 1,
            "heads": 2,
            "encoder_batch": 3,
            "pairs_per_lora": 1,
            "encoder_checkpoint": tmp_path / "encoder.safetensors",
            "fusion_checkpoint": tmp_path / "fusion.safetensors",
        }
    )
    ctx = replace(world, settings=settings)
    rows = ["autolora-top1", "autolora-top2", "esa-gated"]
    bench = BenchmarkOptions(methods=rows, width=64, height=64, demo_scorers=True)
    before = run_benchmark(settings, PROMPTS[:1], bench, tmp_path / "before", ctx=ctx)
    assert all("train-autolora fusion" in before.summary(r).unavailable for r in rows)

    train_encoder_on_graph(settings, world.graph, steps=3)
    train_fusion_on_graph(settings, world.graph, world.generator, steps=1)
    after = run_benchmark(settings, PROMPTS[:1], bench, tmp_path / "after", ctx=ctx)
    found = {r.method: r for r in after.rows}
    assert [len(found[r].experts) for r in rows[:2]] == [1, 2]
    assert all(e.kind == "peft" for r in rows[:2] for e in found[r].experts)
    assert [e.expert_id for e in found["esa-gated"].experts] == after.prompts[0].selected
    assert found["esa-gated"].merge == "gated fusion"
    assert all(e.coefficient is None for r in rows for e in found[r].experts)  # gates decide
    assert all(any("AutoLoRA gates" in n for n in found[r].notes) for r in rows)
    assert "retrieved by weight embedding" in " ".join(found["autolora-top1"].notes)
    assert "DEMO" in after.backends["autolora"] and after.summary("autolora-top1").demo
    assert all(m.images == 1 and m.unavailable is None for m in after.methods)


def test_klora_row_applies_each_layer_s_chosen_lora_whole_unless_the_run_says_otherwise(
    world, tmp_path
):
    bench = options(methods=["klora"]).model_copy(update={"ablations": []})
    report = run_benchmark(world.settings, PROMPTS[:1], bench, tmp_path / "a", ctx=world)
    (row,) = [r for r in report.rows if r.method == "klora"]
    assert row.merge == "klora {'keep_total': True}" and row.images
    mine = bench.model_copy(update={"merge_params": {"klora": {"keep_total": False, "top_k": 8}}})
    report = run_benchmark(world.settings, PROMPTS[:1], mine, tmp_path / "b", ctx=world)
    (row,) = [r for r in report.rows if r.method == "klora"]
    assert row.merge == "klora {'keep_total': False, 'top_k': 8}"
