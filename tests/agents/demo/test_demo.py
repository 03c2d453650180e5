"""`make demo`'s job, scaled down: every stage runs and the output says what was demo."""

from __future__ import annotations

import json

from agents.demo.run import DemoConfig, chat_script, demo_prompts, run_demo
from tools.settings import Settings

SMALL = DemoConfig(
    reference_prompts=3,
    max_experts=6,
    planner_steps=4,
    benchmark_prompts=1,
    ablations=False,
    world=None,
)
SMALL_WORLD = DemoConfig(
    reference_prompts=4, max_experts=5, world_planner_steps=2, benchmark_prompts=1, ablations=False
)


def _run_demo(tmp_path, monkeypatch, config: DemoConfig):
    """The demo on a fresh data dir with no LLM configured; returns (report, settings, said)."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "data")
    settings.platforms.demo_port = 0
    said: list[str] = []
    report = run_demo(settings, tmp_path / "out", say=said.append, config=config)
    return report, settings, said


def test_every_stage_runs_on_demo_backends(tmp_path, monkeypatch):
    report, settings, said = _run_demo(tmp_path, monkeypatch, SMALL)

    assert list(report.seconds) == [
        "base model",
        "reference prompts",
        "crawl",
        "planner",
        "chat",
        "benchmark",
    ]
    assert (report.base_model / "model_index.json").is_file()
    assert report.crawl["registered"] + report.crawl["failed"] == SMALL.max_experts
    assert report.crawl["calibration_edges"] > 0 and report.crawl["no_llm_summaries"] > 0
    assert report.planner["step"] == SMALL.planner_steps

    assert [t["request"] for t in report.turns] == chat_script(demo_prompts(SMALL))
    assert any(t["generated"] for t in report.turns)
    merged = [line for line in said if line.startswith("    merged: ")]
    assert len(merged) == sum(t["generated"] for t in report.turns)
    assert all("×" in line or "base model alone" in line for line in merged)
    assert all(t["chat_mode"] == "no-llm" for t in report.turns)

    assert (tmp_path / "out" / "benchmark" / "gallery.html").is_file()
    assert "DEMO RUN" in (tmp_path / "out" / "benchmark" / "benchmark.md").read_text()
    assert any("no-LLM policy ran" in part for part in report.demo_parts)
    assert any("DEMO DATA" in line for line in said)
    saved = json.loads((tmp_path / "out" / "demo-report.json").read_text())
    assert saved["config"]["max_experts"] == SMALL.max_experts
    traces = list((settings.data_dir / "traces").rglob("*.jsonl"))
    assert {t.parent.name for t in traces} >= {"construction", "selection", "generate", "chat"}


def test_the_default_demo_runs_on_the_small_trained_world(tmp_path, monkeypatch):
    from tools.world import WORLD_DIR

    report, _, said = _run_demo(tmp_path, monkeypatch, SMALL_WORLD)

    assert report.base_model == WORLD_DIR / "base"
    assert any("SMALL WORLD" in line for line in said)
    assert report.crawl["registered"] == SMALL_WORLD.max_experts
    assert report.crawl["calibration_edges"] > 0
    assert report.planner["env"] == "real" and report.planner["step"] == 2
    assert [t["request"] for t in report.turns] == chat_script([], world=True)
    assert any(t["generated"] for t in report.turns)
    table = (tmp_path / "out" / "benchmark" / "world-table.md").read_text()
    assert "GenEval (judge)" in table and "K-LoRA-style" in table
    assert report.benchmark["html"].endswith("world-table.html")
    assert any("not SD 1.5" in part for part in report.demo_parts)
    assert list((tmp_path / "out").rglob("*.merged.safetensors"))  # /save stays in the run's folder
    assert not any("random weights" in part for part in report.demo_parts)


def test_cli_summary_names_the_world_table_report(tmp_path, monkeypatch):
    """The world's benchmark stage lists `eval world`'s files (no "gallery" key)."""
    from typer.testing import CliRunner

    import agents.demo.run as demo_run
    from main import app

    def fake_run(settings, out, say, config):
        report = demo_run.DemoReport(config, out, settings.data_dir, tmp_path / "base")
        report.benchmark = {"markdown": str(out / "world-table.md"), "html": "world-table.html"}
        return report

    monkeypatch.setattr(demo_run, "run_demo", fake_run)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "HTML report and gallery: world-table.html" in result.output
