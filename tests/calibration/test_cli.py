"""`diffgraph ref-prompts ...`, `diffgraph calibrate` and `diffgraph scorers status` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from main import app

SAMPLE = (
    Path(__file__).resolve().parent.parent / "fixtures" / "calibration" / "diffusiondb_sample.jsonl"
)


def _json(output: str):
    """The JSON document of a command's stdout (INFO log lines may precede it)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "[", "{}", "[]"))
    return json.loads("\n".join(lines[start:]))


@pytest.fixture
def run(tmp_path, monkeypatch, worker_spec):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DIFFGRAPH_BASE_MODEL", str(worker_spec.base_model))
    monkeypatch.setenv("DIFFGRAPH_DEVICE", "cpu")
    monkeypatch.setenv("DIFFGRAPH_SCORERS__CLIP", str(worker_spec.scorers["clip"]))
    monkeypatch.setenv(
        "DIFFGRAPH_SCORERS__AESTHETIC_HEAD", str(worker_spec.scorers["aesthetic_head"])
    )
    monkeypatch.setenv("DIFFGRAPH_CALIBRATION__STEPS", "2")
    monkeypatch.setenv("DIFFGRAPH_CALIBRATION__SIZE", "64")
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.output

    return invoke


def test_pick_calibrate_resume(run, tmp_path, expert_files):
    picked = json.loads(
        run("ref-prompts", "pick", "--from", str(SAMPLE), "--n", "2", "--limit", "30", "--json")
    )
    assert len(picked) == 2 and all(p["added"] for p in picked)
    assert len(_json(run("ref-prompts", "list", "--json"))) == 2
    record = {
        "id": "demo-ckpt",
        "kind": "ckpt",
        "base": "sd15",
        "name": "tiny checkpoint",
        "file": {"path": str(expert_files["ckpt"])},
    }
    (tmp_path / "expert.json").write_text(json.dumps(record))
    run("graph", "add-expert", str(tmp_path / "expert.json"))
    first = _json(run("calibrate", "demo-ckpt", "--images", "1", "--json"))
    assert first["calibrated"] == {"demo-ckpt": 2} and first["demo"] is True
    again = _json(run("calibrate", "--all", "--json"))
    assert again["calibrated"] == {} and again["skipped"] == {"demo-ckpt": 2}
    assert "name the experts" in run("calibrate", code=2)


def test_scorers_status_names_what_is_missing(run):
    rows = {r["metric"]: r for r in _json(run("scorers", "status", "--json"))}
    assert rows["clip_score"]["ready"] and rows["aesthetic"]["ready"]
    assert not rows["image_reward"]["ready"]
    assert "scorers.image_reward" in rows["image_reward"]["detail"]


def test_an_expert_that_does_not_fit_the_base_exits_2(run, tmp_path):
    import torch
    from safetensors.torch import save_file

    lora = tmp_path / "other-model.safetensors"  # a LoRA of modules the base does not have
    save_file(
        {
            "lora_unet_nowhere_proj.lora_down.weight": torch.zeros(2, 8),
            "lora_unet_nowhere_proj.lora_up.weight": torch.zeros(8, 2),
        },
        str(lora),
    )
    record = {
        "id": "unfit",
        "kind": "peft",
        "base": "sd15",
        "name": "x",
        "file": {"path": str(lora)},
    }
    (tmp_path / "expert.json").write_text(json.dumps(record))
    run("graph", "add-expert", str(tmp_path / "expert.json"))
    run("ref-prompts", "pick", "--from", str(SAMPLE), "--n", "1", "--limit", "10", "--json")
    report = _json(run("calibrate", "unfit", "--json", code=2))
    assert report["unusable"] == ["unfit"] and "nowhere" in report["failures"]["unfit"]
    assert "cannot be calibrated" in run("calibrate", "unfit", code=2)
