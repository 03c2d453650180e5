"""`generate` merges only the files the graph registered: swapped files, missing weights and
NaN experts are refused (exit 2), hashes are checked on use and cached across runs."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from agents.pipeline.errors import PipelineError, WeightsChangedError
from agents.pipeline.pipeline import GenerateOptions, run
from graph.records import WeightFile
from graph.universal import UniversalGraph
from tools.settings import Settings
from tools.weights.errors import NonFiniteError
from tools.weights.files import read_metadata, sha256_file

EXPERTS = [
    ("lora-cat", "peft", "red cats", []),
    ("lora-swapped", "peft", "blue dogs", []),
    ("lora-nan", "peft", "green birds", []),
    ("lora-gone", "peft", "yellow fish", []),
]


def registered(expert):
    """The expert with the SHA-256 of its file as downloaded (what a crawl records)."""
    weights = WeightFile(path=expert.file.path, sha256=sha256_file(expert.file.path))
    return expert.model_copy(update={"file": weights})


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_sd15, tiny_sd15_files, embedder):
    from tests.support.tiny_experts import tiny_experts, tiny_pipeline
    from tools.tiny import make_tiny_lora

    root = tmp_path_factory.mktemp("expert-files")
    settings = Settings(data_dir=root / "data", base_model=tiny_sd15_files.single_file)
    settings.generation.steps = 2
    experts = [registered(e) for e in tiny_experts(tiny_sd15, root, EXPERTS)]
    by_id = {e.id: e for e in experts}
    make_tiny_lora(tiny_sd15, by_id["lora-swapped"].file.path, seed=9)  # replaced on disk
    nan = load_file(by_id["lora-nan"].file.path)
    next(iter(nan.values()))[0, 0] = float("nan")
    nan_file = by_id["lora-nan"].file.path
    save_file(nan, nan_file, read_metadata(nan_file))
    by_id["lora-nan"] = registered(by_id["lora-nan"])  # registered broken: the hash matches
    os.unlink(by_id["lora-gone"].file.path)
    graph = UniversalGraph(settings.graph, embedder=embedder)
    graph.add_experts(list(by_id.values()))
    yield tiny_pipeline(settings, graph, tiny_sd15_files.folder)
    graph.close()


def options(**kw) -> GenerateOptions:
    return GenerateOptions(width=64, height=64, **kw)


def test_a_swapped_file_is_refused_naming_both_hashes(world, tmp_path):
    expert = world.graph.store.expert("lora-swapped")
    got = sha256_file(expert.file.path)
    with pytest.raises(WeightsChangedError) as caught:
        run("x", world, options(experts=["lora-cat", "lora-swapped"]), tmp_path)
    message = str(caught.value)
    assert "'lora-swapped'" in message and expert.file.sha256 in message and got in message
    assert "Fix:" in message and "crawl" in message
    assert not list(tmp_path.glob("*.png"))


def test_the_recipe_records_the_verified_hash(world, tmp_path):
    out = run("x", world, options(experts=["lora-cat"]), tmp_path)
    expected = world.graph.store.expert("lora-cat").file.sha256
    assert [e.sha256 for e in out.recipe.loras] == [expected]


def test_unchanged_files_are_not_hashed_again(world, tmp_path, monkeypatch):
    import tools.weights.files as files

    run("x", world, options(experts=["lora-cat"]), tmp_path)  # cached on disk
    hashed = []
    real = files._sha256
    monkeypatch.setattr(files, "_HASHES", {})  # as in a new process
    monkeypatch.setattr(files, "_sha256", lambda path: hashed.append(path) or real(path))
    run("x", world, options(experts=["lora-cat"]), tmp_path)
    assert hashed == []
    path = world.graph.store.expert("lora-cat").file.path
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: hashed again
    run("x", world, options(experts=["lora-cat"]), tmp_path)
    assert [str(p) for p in hashed] == [str(os.path.realpath(path))]


def test_fixed_experts_without_weights_are_an_error(world, tmp_path):
    with pytest.raises(PipelineError, match=r"lora-gone.*no local weights.*Fix:"):
        run("x", world, options(experts=["lora-cat", "lora-gone"]), tmp_path)


def test_a_nan_lora_is_refused_and_the_pipeline_kept(world, tmp_path):
    before = {k: v.clone() for k, v in world.generator.pipe.unet.state_dict().items()}
    with pytest.raises(NonFiniteError, match=r"lora-nan\.safetensors"):
        run("x", world, options(experts=["lora-nan"]), tmp_path)
    after = world.generator.pipe.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not list(tmp_path.glob("*.png"))


def test_non_finite_images_are_refused(world):
    from tools.generation.errors import GenerationError
    from tools.generation.request import GenerationRequest

    weight = world.generator.pipe.vae.decoder.conv_out.bias
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.fill_(float("nan"))
    request = GenerationRequest(prompts=["x"], steps=2, width=64, height=64)
    try:
        with pytest.raises(GenerationError, match="NaN"):
            world.generator.generate(request)
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def test_generate_cli_exits_2(world, tmp_path, monkeypatch, tiny_sd15_files):
    from main import app

    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(world.settings.data_dir))
    monkeypatch.setenv("DIFFGRAPH_BASE_MODEL", str(tiny_sd15_files.folder))
    monkeypatch.setenv("DIFFGRAPH_GENERATION__STEPS", "2")
    for expert, expected in (
        ("lora-gone", "no local weights"),
        ("lora-nan", "NaN or infinite"),
        ("lora-swapped", "SHA-256"),
    ):
        args = ["generate", "x", "--size", "64", "--out", str(tmp_path), "--experts", expert]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert expected in result.stderr and "Traceback" not in result.output
    assert not list(tmp_path.glob("*.png"))
