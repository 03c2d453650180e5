"""``diffgraph train-autolora encoder|fusion`` and ``diffgraph select --retriever autolora``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from graph.records import BaseFamily, Expert, ExpertKind, WeightFile


@pytest.fixture
def cli(tmp_path, monkeypatch, embedder, synthetic, tiny_sd15_files):
    """A graph of three synthetic demo LoRAs (one per concept) and tiny settings."""
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph
    from tools.cli import build_app
    from tools.weights.write import save_adapter

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    env = {
        "DIFFGRAPH_DATA_DIR": str(tmp_path / "data"),
        "DIFFGRAPH_BASE_MODEL": str(tiny_sd15_files.folder),
        "DIFFGRAPH_AUTOLORA__D_MODEL": "32",
        "DIFFGRAPH_AUTOLORA__LAYERS": "1",
        "DIFFGRAPH_AUTOLORA__HEADS": "2",
        "DIFFGRAPH_AUTOLORA__PAIRS_PER_LORA": "1",
        "DIFFGRAPH_GENERATION__STEPS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("graph.universal.Embedder", lambda *args, **kwargs: embedder)
    loras = synthetic[0][::4][:3]
    experts = []
    for lora in loras:
        path = save_adapter(lora.adapter, tmp_path / f"{lora.id}.safetensors", "kohya")
        experts.append(
            Expert(
                id=lora.id,
                kind=ExpertKind.PEFT,
                base=BaseFamily.SD15,
                name=lora.concept,
                description=lora.captions[0],
                example_prompts=list(lora.captions[1:]),
                file=WeightFile(path=str(path)),
                demo=True,
            )
        )
    with UniversalGraph(GraphConfig(data_dir=tmp_path / "data"), embedder) as graph:
        graph.add_experts(experts)
    app = build_app()
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_train_encoder_then_select_by_weights(cli, tmp_path):
    from tools.autolora.checkpoint import load_encoder

    result = cli("train-autolora", "encoder", "--steps", "20", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "encoder" and report["steps"] == 20 and report["demo"]
    assert len(report["loras"]) == 3 and report["notes"]
    encoder, record = load_encoder(tmp_path / "data" / "autolora" / "encoder.safetensors")
    assert encoder.config.d_model == 32 and encoder.config.text_model == "all-MiniLM-L6-v2"
    assert record.demo and record.steps == 20 and record.loras == report["loras"]

    selected = cli("select", "a watercolor landscape", "--retriever", "autolora", "--json")
    assert selected.exit_code == 0, selected.output
    data = json.loads(selected.stdout)
    assert any("AutoLoRA weight encoder trained on DEMO data" in w for w in data["warnings"])
    assert (tmp_path / "data" / "autolora" / "embeddings.npz").is_file()


def test_train_fusion_on_the_tiny_base(cli, tmp_path):
    from tools.autolora.checkpoint import load_gates

    result = cli("train-autolora", "fusion", "--steps", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "fusion" and report["steps"] == 1 and report["demo"]
    assert "self-generated" in report["data"]
    assert any("DEMO" in n for n in report["notes"])
    gates, record = load_gates(tmp_path / "data" / "autolora" / "fusion.safetensors")
    assert len(gates.names) == 176 and gates.config.global_rank == 4
    assert record.demo and record.pairs_side == 64


def test_missing_material_is_explained(cli, tmp_path):
    no_encoder = cli("select", "a cat", "--retriever", "autolora")
    assert no_encoder.exit_code == 2 and "train-autolora encoder" in no_encoder.output
    no_pairs = cli("train-autolora", "fusion", "--pairs-dir", str(tmp_path / "none"))
    assert no_pairs.exit_code == 2 and "at least 2 sd15 LoRAs" in no_pairs.output
    assert "train-autolora" in cli("--help").output
