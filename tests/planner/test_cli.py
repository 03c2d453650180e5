"""`diffgraph train-planner` and `diffgraph plan` end to end through the Typer app."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from graph.config import GraphConfig
from graph.records import BaseFamily, Calibration, Expert, ExpertKind
from main import app
from planner.envs.synthetic import DEMO_EXPERTS, METRICS
from tests.planner.conftest import FIXTURES

PROMPTS = FIXTURES / "diffusiondb_train_sample.jsonl"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DIFFGRAPH_PLANNER__CHECKPOINT_EVERY", "2")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


@pytest.fixture
def installed(trained, tmp_path):
    """The session's trained synthetic-world planner at the default checkpoint path."""
    path = tmp_path / "data" / "planner" / "planner.safetensors"
    path.parent.mkdir(parents=True)
    shutil.copy(trained.checkpoint, path)
    return path


def test_train_writes_curve_and_resumes(run, tmp_path):
    args = ["train-planner", "--prompts", str(PROMPTS), "--limit", "24", "--refs", "12"]
    result = run(*args, "--steps", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 3 and summary["synthetic"] and summary["demo"]
    assert summary["prompts"] == 12 and summary["env"] == "synthetic"
    path = tmp_path / "data" / "planner" / "planner.safetensors"
    assert summary["checkpoint"] == str(path)
    csv = path.with_name("planner.rewards.csv")
    assert len(csv.read_text().splitlines()) == 4
    assert path.with_name("planner.rewards.png").is_file()
    again = run(*args, "--steps", "5")
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = run(*args, "--steps", "5", "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["step"] == 5
    assert len(csv.read_text().splitlines()) == 6


def test_train_rejects_too_few_prompts(run):
    result = run("train-planner", "--prompts", str(PROMPTS), "--limit", "5", "--refs", "10")
    assert result.exit_code == 2 and "smaller --refs" in result.output


def _demo_graph(tmp_path, embedder, metrics):
    """Six demo experts, two reference prompts, calibration with ``metrics``."""
    from graph.universal import UniversalGraph

    records = json.loads(DEMO_EXPERTS.read_text())["experts"]
    chosen = [records[i] for i in (0, 1, 3, 8, 9, 12)]
    experts = [
        Expert(
            id=r["id"],
            kind=ExpertKind(r["kind"]),
            base=BaseFamily.SD15,
            name=r["id"],
            description=r["description"],
            demo=True,
        )
        for r in chosen
    ]
    with UniversalGraph(GraphConfig(data_dir=tmp_path / "data"), embedder) as graph:
        graph.add_experts(experts)
        refs = graph.add_reference_prompts(["a portrait of a woman", "a neon city at night"])
        graph.set_calibrations(
            Calibration(
                expert_id=e.id,
                ref_id=r.id,
                scores={m: 0.1 * i + 0.2 * j + k for k, m in enumerate(metrics)},
            )
            for i, e in enumerate(experts)
            for j, r in enumerate(refs)
        )
    return [e.id for e in experts]


def test_plan_fixed_experts_with_the_trained_planner(run, installed, tmp_path, embedder):
    ids = _demo_graph(tmp_path, embedder, METRICS)
    result = run("plan", "an anime girl, cel shading", "--experts", ",".join(ids), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["planner"] == "vgae" and plan["mode"] == "learned"
    assert plan["selection_mode"] == "fixed" and plan["synthetic"] and plan["demo"]
    assert [e["expert_id"] for e in plan["experts"]] == ids
    for kind in ("ckpt", "peft"):
        weights = [e["merge_weight"] for e in plan["experts"] if e["kind"] == kind]
        assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert all(e["alpha"] > 1 and e["beta"] > 1 for e in plan["experts"])
    table = run("plan", "an anime girl", "--experts", ids[0])
    assert table.exit_code == 0 and "synthetic reward" in table.output


def test_plan_with_selection_and_a_baseline(run, tmp_path, embedder):
    _demo_graph(tmp_path, embedder, ["clip_score"])
    result = run("plan", "a photo of a cat, anime style", "--planner", "equal", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["selection_mode"] == "no-llm" and plan["experts"]
    assert {e["coefficient"] for e in plan["experts"]} == {0.5}


def test_plan_errors_are_one_clear_line(run, installed, tmp_path, embedder):
    ids = _demo_graph(tmp_path, embedder, ["clip_score"])
    mismatch = run("plan", "a cat", "--experts", ",".join(ids))
    assert mismatch.exit_code == 2
    assert "edge features of dim 5" in mismatch.output and "train-planner" in mismatch.output
    unknown = run("plan", "a cat", "--experts", "nope", "--planner", "equal")
    assert unknown.exit_code == 2 and "no expert with id 'nope'" in unknown.output
    missing = run("plan", "a cat", "--experts", ids[0], "--checkpoint", "gone.safetensors")
    assert missing.exit_code == 2 and "does not exist" in missing.output
