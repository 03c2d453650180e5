"""User-given weights mean what they mean in A1111 (issue 19): ``--lora x:0.5`` is strength
0.5, checkpoint weights are shares; softmax stays the planner's convention."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from typer.testing import CliRunner

from tools.cli import build_app
from tools.weights.plan import MergePlan, WeightedExpert
from tools.weights.stream import merge_to_file

runner = CliRunner()
Q = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"


def _cli_merge(out, *args: str) -> dict[str, torch.Tensor]:
    result = runner.invoke(build_app(), ["merge", *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return load_file(str(out))


def _plan_merge(out, **plan) -> dict[str, torch.Tensor]:
    merge_to_file(MergePlan(**plan), out)
    return load_file(str(out))


def _w(path, coefficient: float) -> WeightedExpert:
    return WeightedExpert(path=path, coefficient=coefficient)


def test_lora_weight_is_its_strength(tiny_files, tmp_path):
    lora, base = tiny_files["lora_kohya"], tiny_files["ckpt_ldm"]
    merged = _cli_merge(tmp_path / "cli.safetensors", "--lora", f"{lora}:0.5", "--base", str(base))
    half = _plan_merge(
        tmp_path / "h.safetensors", loras=[_w(lora, 0.5)], normalize="raw", base=base
    )
    full = _plan_merge(
        tmp_path / "f.safetensors", loras=[_w(lora, 1.0)], normalize="raw", base=base
    )
    original = load_file(str(base))[Q]
    assert torch.equal(merged[Q], half[Q])
    torch.testing.assert_close(merged[Q] - original, 0.5 * (full[Q] - original))
    softmax = _cli_merge(
        tmp_path / "s.safetensors",
        "--lora", f"{lora}:0.5", "--base", str(base), "--normalize", "softmax",
    )  # fmt: skip
    assert torch.equal(softmax[Q], full[Q])  # the paper's softmax: one LoRA gets 1


def test_checkpoint_weights_are_shares_of_a_weighted_sum(tiny_files, tmp_path):
    a, b = tiny_files["ckpt_ldm"], tiny_files["ckpt_diffusers"]
    given = _cli_merge(tmp_path / "g.safetensors", "--ckpt", f"{a}:0.7", "--ckpt", f"{b}:0.3")
    expected = _plan_merge(
        tmp_path / "e.safetensors", checkpoints=[_w(a, 0.7), _w(b, 0.3)], normalize="raw"
    )
    assert torch.equal(given[Q], expected[Q])
    even = _cli_merge(tmp_path / "1.safetensors", "--ckpt", f"{a}:1", "--ckpt", f"{b}:1")
    halves = _plan_merge(
        tmp_path / "h.safetensors", checkpoints=[_w(a, 0.5), _w(b, 0.5)], normalize="raw"
    )
    assert torch.equal(even[Q], halves[Q])


def test_strength_weights_and_the_planner_default(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"a")
    (tmp_path / "l.safetensors").write_bytes(b"l")
    loras = [_w(tmp_path / "l.safetensors", 0.5)]
    checkpoints = [_w(tmp_path / "a.safetensors", 2.0)]
    plan = MergePlan(checkpoints=checkpoints, loras=loras, normalize="strength")
    assert plan.lora_weights() == [0.5] and plan.checkpoint_weights() == [1.0]
    assert MergePlan(loras=loras).lora_weights() == [1.0]  # built in code: softmax
    with pytest.raises(ValidationError, match="add up to 0"):
        MergePlan(checkpoints=[_w(tmp_path / "a.safetensors", 0.0)], normalize="strength")
    zero = runner.invoke(
        build_app(), ["merge", "--ckpt", f"{tmp_path / 'a.safetensors'}:0", "-o", "o.safetensors"]
    )
    assert zero.exit_code == 2 and "add up to 0" in zero.output


def test_a_plan_file_without_normalize_means_strength(tmp_path):
    (tmp_path / "l.safetensors").write_bytes(b"l")
    (tmp_path / "plan.yaml").write_text("loras:\n  - {path: l.safetensors, coefficient: 0.5}\n")
    plan = MergePlan.from_file(tmp_path / "plan.yaml")
    assert plan.normalize == "strength" and plan.lora_weights() == [0.5]
    (tmp_path / "paper.yaml").write_text(
        "loras:\n  - {path: l.safetensors, coefficient: 0.5}\nnormalize: softmax\n"
    )
    assert MergePlan.from_file(tmp_path / "paper.yaml").lora_weights() == [1.0]


def test_merge_help_says_which_meaning_applies():
    result = runner.invoke(build_app(), ["merge", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "strength (A1111 <lora:x:0.7>" in text and "❌" not in text
    assert "applies X at strength 0.5" in text and "planner's coefficients" in text
