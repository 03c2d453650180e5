"""``diffgraph weights inspect`` and ``diffgraph merge`` through the real CLI."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tools.cli import build_app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(build_app(), list(args))


def test_inspect_json(tiny_files):
    result = invoke("weights", "inspect", str(tiny_files["lora_diffusers"]), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == "diffusers-lora" and data["family"] == "sd15"
    assert data["ranks"] == {"4": 176} and len(data["autov2"]) == 10


def test_merge_help_shows_the_a1111_syntax_literally():
    result = runner.invoke(build_app(), ["merge", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "(A1111 <lora:x:0.7>:" in result.stdout and "❌" not in result.stdout


def test_inspect_table_and_methods(tiny_files):
    result = invoke("weights", "inspect", str(tiny_files["ckpt_ldm"]))
    assert result.exit_code == 0 and "ldm-checkpoint" in result.stdout
    methods = json.loads(invoke("weights", "methods", "--json").stdout)
    assert {m["name"] for m in methods} >= {
        "diffgraph",
        "equal",
        "task_arithmetic",
        "ties",
        "dare",
        "dare_ties",
        "magnitude_prune",
        "klora",
    }


def test_merge_command(tiny_files, tmp_path):
    out = tmp_path / "merged.safetensors"
    result = invoke(
        "merge",
        "--ckpt", f"{tiny_files['ckpt_ldm']}:0.7",
        "--ckpt", f"{tiny_files['ckpt_diffusers']}:0.3",
        "--lora", f"{tiny_files['lora_kohya']}:1.2",
        "--method", "diffgraph",
        "-o", str(out),
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tensors"] == 1130 and report["lora_modules"] == {"a.safetensors": 176}
    assert "model.diffusion_model.out.2.weight" in load_file(str(out))


def test_pickle_and_bad_requests_exit_2(tmp_path):
    torch.save({"lora_unet_conv_in.lora_down.weight": torch.zeros(1, 4, 3, 3)}, tmp_path / "x.pt")
    result = invoke("weights", "inspect", str(tmp_path / "x.pt"))
    assert result.exit_code == 2 and "--allow-pickle" in result.output
    result = invoke("merge", "--ckpt", "a.safetensors", "--method", "slerp", "-o", "o.safetensors")
    assert result.exit_code == 2 and "unknown merge method" in result.output


def test_merge_output_that_cannot_be_written_fails_before_merging(tiny_files, tmp_path):
    (tmp_path / "file").write_text("")
    lora = ["--lora", f"{tiny_files['lora_kohya']}:1", "--base", str(tiny_files["ckpt_ldm"])]
    for output, message in (
        (tmp_path, "is a folder: give a file path"),
        (tmp_path / "file" / "merged.safetensors", "is a file, not a folder"),
    ):
        result = invoke("merge", *lora, "-o", str(output))
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_merge_plan_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "plan.json").write_bytes(b'{"loras": [{"path": "caf\xe9.safetensors"}]}')
    result = invoke("merge", "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "m"))
    assert result.exit_code == 2 and "cannot read merge config" in result.stderr, result.output
