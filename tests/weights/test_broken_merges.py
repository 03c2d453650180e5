"""Broken merges are refused: NaN / infinite tensors, weights and parameters, absurd alphas,
overflowing results and incomplete checkpoints give one error line and exit 2, write
nothing and leave loaded models as they were."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tests.weights.conftest import state_of
from tools.cli import build_app
from tools.weights.apply import apply_merge
from tools.weights.errors import IncompatibleExpertsError, MergeConfigError, NonFiniteError
from tools.weights.files import read_metadata
from tools.weights.plan import MergePlan, WeightedExpert

runner = CliRunner()


def refused(*args: str) -> str:
    """The one error line of a CLI call that must exit 2."""
    result = runner.invoke(build_app(), list(args))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return " ".join(result.output.split())


def edited(source, path, edit) -> str:
    """A copy of the safetensors file ``source`` at ``path`` with ``edit`` applied to it."""
    state = load_file(str(source))
    edit(state)
    save_file(state, str(path), read_metadata(source))
    return str(path)


def first(state: dict, suffix: str) -> str:
    return next(k for k in sorted(state) if k.endswith(suffix))


@pytest.fixture
def nan_lora(tiny_files, tmp_path):
    def poison(state):
        state[first(state, "lora_up.weight")][0, 0] = float("nan")

    return edited(tiny_files["lora_kohya"], tmp_path / "nan.safetensors", poison)


def test_nan_lora_tensor_is_refused(nan_lora, tiny_files, tmp_path):
    out = tmp_path / "merged.safetensors"
    base = str(tiny_files["ckpt_ldm"])
    line = refused("merge", "--lora", nan_lora, "--base", base, "-o", str(out))
    assert "nan.safetensors" in line and "NaN or infinite" in line and "Fix:" in line
    assert not out.exists()


def test_nan_lora_is_not_applied_to_a_loaded_model(nan_lora, pipe):
    parts = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    before = state_of(parts)
    plan = MergePlan(loras=[WeightedExpert(path=nan_lora, coefficient=1.0)])
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        apply_merge(parts, plan)
    after = state_of(parts)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_infinite_checkpoint_tensor_is_refused_and_the_model_restored(tiny_files, pipe, tmp_path):
    def poison(state):
        state[sorted(k for k in state if "diffusion_model.output_blocks" in k)[-1]].fill_(
            float("inf")
        )

    bad = edited(tiny_files["ckpt_ldm"], tmp_path / "inf.safetensors", poison)
    line = refused("merge", "--ckpt", f"{bad}:0.5", "--ckpt", f"{tiny_files['ckpt_ldm']}:0.5",
                   "-o", str(tmp_path / "out.safetensors"))  # fmt: skip
    assert "inf.safetensors" in line and "output_blocks" in line
    parts = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    before = state_of(parts)
    with pytest.raises(NonFiniteError):  # a late tensor: earlier ones were already merged
        apply_merge(parts, MergePlan(checkpoints=[WeightedExpert(path=bad, coefficient=1.0)]))
    after = state_of(parts)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "1e6"])
def test_non_finite_or_absurd_weights_are_refused(tiny_files, tmp_path, weight):
    out = tmp_path / "merged.safetensors"
    line = refused(
        "merge", "--lora", f"{tiny_files['lora_kohya']}:{weight}",
        "--base", str(tiny_files["ckpt_ldm"]), "-o", str(out),
    )  # fmt: skip
    assert "a.safetensors" in line and "Fix:" in line
    assert not out.exists()


def test_checkpoint_shares_that_nearly_cancel_are_refused(tiny_files, tmp_path):
    line = refused(
        "merge", "--ckpt", f"{tiny_files['ckpt_ldm']}:1", "--ckpt",
        f"{tiny_files['ckpt_diffusers']}:-0.999", "-o", str(tmp_path / "out.safetensors"),
    )  # fmt: skip
    assert "c1.safetensors" in line and "merge weight 1000" in line


def test_non_finite_method_parameter_is_refused(tiny_files, tmp_path):
    line = refused(
        "merge", "--ckpt", str(tiny_files["ckpt_ldm"]), "--method", "task_arithmetic",
        "--param", "scale=.nan", "--base", str(tiny_files["ckpt_diffusers"]),
        "-o", str(tmp_path / "out.safetensors"),
    )  # fmt: skip
    assert "scale" in line and "finite" in line


def test_non_finite_weights_are_refused_by_the_in_place_merge(tiny_files, pipe):
    plan = MergePlan(loras=[WeightedExpert(path=tiny_files["lora_kohya"], coefficient=1.0)])
    plan.loras[0].coefficient = float("nan")  # as a diverged planner would give it
    with pytest.raises(MergeConfigError, match="not a finite number"):
        apply_merge({"unet": pipe.unet, "text_encoder": pipe.text_encoder}, plan)


def test_absurd_alpha_is_refused(tiny_files, tmp_path):
    def huge(state):
        state[first(state, ".alpha")] = torch.tensor(1e30)

    bad = edited(tiny_files["lora_kohya"], tmp_path / "alpha.safetensors", huge)
    line = refused("merge", "--lora", bad, "--base", str(tiny_files["ckpt_ldm"]),
                   "-o", str(tmp_path / "out.safetensors"))  # fmt: skip
    assert "alpha" in line and "alpha.safetensors" in line and "Fix:" in line


def test_overflowing_merge_result_is_refused(tiny_files, tmp_path):
    def blow_up(state):  # finite factors whose product overflows float32
        for key in (first(state, "lora_up.weight"), first(state, "lora_down.weight")):
            state[key] = torch.full_like(state[key], 3e30)

    bad = edited(tiny_files["lora_kohya"], tmp_path / "big.safetensors", blow_up)
    out = tmp_path / "out.safetensors"
    line = refused("merge", "--lora", bad, "--base", str(tiny_files["ckpt_ldm"]), "-o", str(out))
    assert "not finite" in line and "Fix:" in line
    assert not out.exists()


def test_checkpoint_missing_half_its_tensors_is_refused(tiny_files, tmp_path):
    def halve(state):
        for key in sorted(state)[::2]:
            del state[key]

    half = edited(tiny_files["ckpt_ldm"], tmp_path / "half.safetensors", halve)
    out = tmp_path / "out.safetensors"
    for args in (
        ["--ckpt", half],
        ["--ckpt", half, "--ckpt", str(tiny_files["ckpt_ldm"])],  # the broken one first
        ["--lora", str(tiny_files["lora_kohya"]), "--base", half],
    ):
        line = refused("merge", *args, "-o", str(out))
        assert "half.safetensors" in line and "missing" in line and "Fix:" in line
    assert not out.exists()


def test_incomplete_checkpoint_error_names_the_family_key_set(tiny_files, tmp_path):
    from tools.weights.stream import merge_to_file

    def drop_text_encoder(state):
        for key in [k for k in state if k.startswith("cond_stage_model.")]:
            del state[key]

    no_te = edited(tiny_files["ckpt_ldm"], tmp_path / "no_te.safetensors", drop_text_encoder)
    plan = MergePlan(checkpoints=[WeightedExpert(path=no_te, coefficient=1.0)])
    with pytest.raises(IncompatibleExpertsError, match="sd15"):
        merge_to_file(plan, tmp_path / "out.safetensors")


@pytest.mark.parametrize(("keymap", "family"), [("sd1-ldm", "sd15"), ("sdxl-sgm", "sdxl")])
def test_the_complete_key_set_is_that_of_real_checkpoints(keymap, family):
    from graph.records import BaseFamily
    from tests.weights.conftest import load_keymap
    from tools.weights.keymap import IGNORED_LDM, required_ldm_keys

    real = {
        key
        for keys in load_keymap(keymap).values()
        for key, entry in keys.items()
        if not entry.get("optional")
        and not IGNORED_LDM.match(key)
        and not key.startswith("first_stage_model.")  # the VAE is not required
    }
    assert required_ldm_keys(BaseFamily(family)) == real
