"""A small graph of known experts (real MiniLM embeddings) for the selection tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.records import BaseFamily, Expert, ExpertKind, ExpertStatus, WeightFile

CKPT, PEFT, SD15 = ExpertKind.CKPT, ExpertKind.PEFT, BaseFamily.SD15

# id, kind, name, description (what a crawl would have written), trigger words
CATALOGUE = [
    (
        "ckpt-watercolor",
        CKPT,
        "Aquarelle Dream",
        "Watercolor painting checkpoint: soft washes, paper texture, loose brush strokes and "
        "pastel palettes, for portraits and landscapes in traditional watercolor style.",
        [],
    ),
    (
        "ckpt-photoreal",
        CKPT,
        "RealVision Photo",
        "Photorealistic checkpoint for realistic photographs of people: DSLR look, natural skin, "
        "sharp focus, studio and outdoor photography.",
        [],
    ),
    (
        "ckpt-anime",
        CKPT,
        "Anime Pastel Mix",
        "Anime illustration checkpoint: cel shading, vibrant colors, anime characters in manga "
        "style with clean line art.",
        [],
    ),
    (
        "ckpt-fantasy",
        CKPT,
        "Fantasy World",
        "Fantasy landscape checkpoint: epic mountains, castles and matte-painting environments "
        "under dramatic skies.",
        [],
    ),
    (
        "lora-red-hair",
        PEFT,
        "Ginger Hair",
        "Red hair LoRA: vivid ginger and copper red hair for women and men, long flowing "
        "hairstyles with detailed strands.",
        ["redhead"],
    ),
    (
        "lora-red-flamingo",
        PEFT,
        "Red Flamingo",
        "Red flamingo LoRA: bright pink and red flamingo birds standing in tropical lagoons, "
        "detailed feathers.",
        ["flamingo"],
    ),
    (
        "lora-eyes",
        PEFT,
        "Detailed Eyes",
        "Detailed eyes LoRA: sharp, beautiful, realistic eyes with iris detail and eyelashes for "
        "portraits.",
        ["detailed eyes"],
    ),
    (
        "lora-eyes-copy",
        PEFT,
        "Eye Enhancer",
        "Eye detail enhancer LoRA: beautiful detailed eyes with realistic iris and eyelashes in "
        "portraits.",
        [],
    ),
    (
        "lora-lips",
        PEFT,
        "Glossy Lips",
        "Lip detail LoRA: full glossy lips with realistic texture for portrait close-ups.",
        [],
    ),
    (
        "lora-cinematic",
        PEFT,
        "Cinematic Light",
        "Cinematic lighting LoRA: dramatic volumetric light, rim light and a film look for scenes.",
        [],
    ),
    (
        "lora-cyberpunk",
        PEFT,
        "Neon City",
        "Cyberpunk city LoRA: neon-lit futuristic streets at night with rain and holograms.",
        [],
    ),
    (
        "lora-cat",
        PEFT,
        "Fluffy Cats",
        "Cute cats LoRA: fluffy kittens and cats with detailed fur.",
        ["fluffycat"],
    ),
    (
        "lora-armor",
        PEFT,
        "Knight Armor",
        "Knight armor LoRA: ornate medieval plate armor in engraved steel.",
        [],
    ),
]


def make_experts() -> list[Expert]:
    experts = [
        Expert(id=i, kind=k, base=SD15, name=n, description=d, trigger_words=t)
        for i, k, n, d, t in CATALOGUE
    ]
    experts[4] = experts[4].model_copy(
        update={"file": WeightFile(path="loras/gingerHair_v2.safetensors")}
    )
    experts += [
        # the same skill for another family, and an old deprecated version: never selected
        Expert(
            id="sdxl-red-hair",
            kind=PEFT,
            base=BaseFamily.SDXL,
            name="Ginger Hair XL",
            description="Red hair LoRA for SDXL: vivid ginger and copper red hair.",
        ),
        Expert(
            id="lora-red-hair-v1",
            kind=PEFT,
            base=SD15,
            name="Ginger Hair v1",
            description="Red hair LoRA: ginger and copper red hair for women, first version.",
            status=ExpertStatus.DEPRECATED,
            superseded_by="lora-red-hair",
        ),
    ]
    return experts


def known_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder) -> Path:
    """``tmp_path/data`` holding the known graph, with the CLI pointed at it (and no LLM)."""
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph

    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("graph.universal.Embedder", lambda *args, **kwargs: embedder)
    with UniversalGraph(GraphConfig(data_dir=tmp_path / "data"), embedder) as graph:
        graph.add_experts(make_experts())
    return tmp_path / "data"


@pytest.fixture(scope="session")
def known_graph(tmp_path_factory, embedder):
    """The known graph, built once (selection only reads it)."""
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph

    config = GraphConfig(data_dir=tmp_path_factory.mktemp("selection") / "data")
    graph = UniversalGraph(config, embedder)
    graph.add_experts(make_experts())
    yield graph
    graph.close()


@pytest.fixture
def make_context(tmp_path):
    """``make_context(graph, server=None, llm={...}, **selection_settings)``."""
    from agents.selection import SelectionContext
    from tools.llm import make_chat_model
    from tools.settings import LLMSettings, SelectionSettings
    from tools.tracing import TraceWriter

    def build(graph, server=None, llm=None, **settings):
        llm_settings = server.llm_settings(**(llm or {})) if server else LLMSettings()
        return SelectionContext(
            graph=graph,
            settings=SelectionSettings(**settings),
            model=make_chat_model(llm_settings),
            llm=llm_settings,
            tracer=TraceWriter(tmp_path / "traces", "selection"),
        )

    return build
