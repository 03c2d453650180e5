"""Formats other tools write (cloneofsimo ``lora``), the shipped module tables, and what
merged files keep for the tools that read them."""

from __future__ import annotations

import pytest

from graph.records import BaseFamily
from tools.weights import families


@pytest.mark.parametrize("family", list(BaseFamily))
def test_shipped_shape_tables_equal_the_built_models(family):
    shipped = families.parameter_shapes(family)
    built = families.build_parameter_shapes(family)
    assert list(shipped.items()) == list(built.items())


def test_inspect_builds_no_model(tiny_files, monkeypatch):
    from tools.weights.inspect import inspect_expert

    def refuse(*args, **kwargs):
        raise AssertionError("inspect must read the shipped tables, not build models")

    monkeypatch.setattr(families, "build_component", refuse)
    info = inspect_expert(tiny_files["lora_kohya"])
    assert info.format == "kohya-lora" and info.fits_full_size is False


def test_merged_file_keeps_what_tools_read(tiny_files, tmp_path):
    """Scheduler buffers and the inputs' ``ss_*`` / ``modelspec.*`` survive a merge; the
    merged file carries its own SAI model spec (title, architecture, merged_from, recipe)."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from tools.weights.files import read_metadata, save_tensors
    from tools.weights.plan import MergePlan, WeightedExpert
    from tools.weights.stream import merge_to_file

    state = load_file(str(tiny_files["ckpt_ldm"]))
    schedule = torch.linspace(0.9991, 0.0047, 1000, dtype=torch.float32)
    state.update(
        {
            "alphas_cumprod": schedule,
            "model_ema.decay": torch.tensor(0.9999),
            "model_ema.diffusion_modelinput_blocks00weight": torch.zeros(2),
        }
    )
    source = tmp_path / "input-a.safetensors"
    save_tensors(
        state,
        source,
        {
            "modelspec.title": "Input A",
            "modelspec.prediction_type": "epsilon",
            "modelspec.hash_sha256": "0x1234",
            "ss_base_model_version": "sd_v1",
        },
    )
    plan = MergePlan(
        checkpoints=[WeightedExpert(path=source, coefficient=1.0)],
        loras=[WeightedExpert(path=tiny_files["lora_kohya"], coefficient=0.7, name="style")],
        normalize="strength",
    )
    out = tmp_path / "my-merge.safetensors"
    report = merge_to_file(plan, out)
    merged = load_file(str(out))
    assert torch.equal(merged["alphas_cumprod"], schedule)
    assert not any(k.startswith("model_ema.") for k in merged)
    assert report.tensors == len(merged)
    meta = safe_open(str(out), "pt").metadata()
    assert meta["modelspec.sai_model_spec"] == "1.0.0"
    assert meta["modelspec.title"] == "my-merge"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"
    assert meta["modelspec.resolution"] == "512x512"
    assert meta["modelspec.prediction_type"] == "epsilon"  # kept (ComfyUI reads it)
    assert meta["ss_base_model_version"] == "sd_v1"
    assert "modelspec.hash_sha256" not in meta  # described the input, not the merge
    assert meta["modelspec.merged_from"] == "Input A, style"
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["method"] == plan.method and recipe["type"] == "diffgraph"
    inputs = json.loads(meta["diffgraph_inputs"])
    assert [i["kind"] for i in inputs] == ["checkpoint", "lora"]
    lora_meta = read_metadata(tiny_files["lora_kohya"])
    assert inputs[1]["metadata"] == {k: v for k, v in lora_meta.items() if k.startswith("ss_")}
    assert meta["diffgraph_recipe_hash"] == plan.recipe_hash()


UNET_CLASSES = ["CrossAttention", "Attention", "GEGLU"]  # lora_diffusion's default
TEXT_CLASSES = ["CLIPAttention"]


def lora_diffusion_order(model, classes, component: str) -> list[str]:
    """``lora_diffusion._find_modules``: ``nn.Linear`` layers inside modules of ``classes``,
    ancestors in ``model.modules()`` order, each ancestor's ``named_modules()`` within
    (canonical ``component.…`` names)."""
    import torch

    from tools.weights.names import canonical_name

    names = {id(m): canonical_name(f"{component}.{n}") for n, m in model.named_modules()}
    return [
        names[id(module)]
        for ancestor in model.modules()
        if ancestor.__class__.__name__ in classes
        for module in ancestor.modules()
        if isinstance(module, torch.nn.Linear)
    ]


def cloneofsimo_file(path, orders: dict, shapes, rank: int = 1, seed: int = 0):
    """A cloneofsimo ``lora`` file as ``save_safeloras`` writes it; returns name -> ΔW."""
    import json

    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    state, deltas = {}, {}
    metadata = {}
    for component, (classes, names) in orders.items():
        metadata[component] = json.dumps(classes)
        metadata[f"{component}:rank"] = str(rank)
        for i, name in enumerate(names):
            out_features, in_features = shapes[name]
            up = torch.randn(out_features, rank, generator=generator)
            down = torch.randn(rank, in_features, generator=generator)
            state[f"{component}:{i}:up"], state[f"{component}:{i}:down"] = up, down
            deltas[name] = up @ down
    save_file(state, str(path), metadata)
    return deltas


@pytest.fixture(scope="module")
def sd15_meta():
    return {
        component: families.build_component(kind, config)
        for component, (kind, config) in families.FAMILY_COMPONENTS[BaseFamily.SD15].items()
        if component in ("unet", "text_encoder")
    }


def test_cloneofsimo_index_order_is_lora_diffusions_module_order(sd15_meta):
    from tools.weights.cloneofsimo import module_order

    table = families.module_shapes(BaseFamily.SD15)
    for component, classes in (("unet", UNET_CLASSES), ("text_encoder", TEXT_CLASSES)):
        want = lora_diffusion_order(sd15_meta[component], classes, component)
        assert module_order(table, component, classes, legacy=False) == want
    assert len(module_order(table, "unet", UNET_CLASSES, legacy=False)) == 16 * 9


@pytest.mark.parametrize("legacy", [False, True])
def test_cloneofsimo_files_read_onto_their_modules(sd15_meta, tmp_path, legacy):
    """Full-size files (rank 1) in today's module order and in diffusers < 0.12's (ff
    registered before attn2): every index lands on its module, ΔW = up @ down."""
    import torch

    from tools.weights.cloneofsimo import module_order
    from tools.weights.inspect import inspect_expert
    from tools.weights.read import read_adapter

    table = families.module_shapes(BaseFamily.SD15)
    unet = module_order(table, "unet", UNET_CLASSES, legacy)
    text = lora_diffusion_order(sd15_meta["text_encoder"], TEXT_CLASSES, "text_encoder")
    path = tmp_path / "cloneofsimo.safetensors"
    deltas = cloneofsimo_file(
        path, {"unet": (UNET_CLASSES, unet), "text_encoder": (TEXT_CLASSES, text)}, table
    )
    adapter = read_adapter(path)
    assert adapter.format == "cloneofsimo-lora" and adapter.family == BaseFamily.SD15
    assert set(adapter.modules) == set(deltas)
    for name, delta in deltas.items():
        assert torch.equal(adapter.modules[name].delta(), delta), name
    info = inspect_expert(path)
    assert info.format == "cloneofsimo-lora" and info.fits_full_size is True
    assert info.modules == 16 * 9 + 12 * 4


def test_cloneofsimo_files_that_fit_nothing_are_named(tmp_path, tiny_pipe):
    import json

    import torch
    from safetensors.torch import save_file

    from tools.weights.errors import ShapeMismatchError, UnsupportedFormatError
    from tools.weights.read import read_adapter

    path = tmp_path / "odd.safetensors"
    save_file(
        {"unet:0:up": torch.zeros(7, 1), "unet:0:down": torch.zeros(1, 7)},
        str(path),
        {"unet": json.dumps(UNET_CLASSES)},
    )
    with pytest.raises(ShapeMismatchError, match="cloneofsimo lora"):
        read_adapter(path)
    save_file(
        {"unet:0:up": torch.zeros(7, 1), "unet:0:down": torch.zeros(1, 7)},
        str(path),
        {"unet": json.dumps(["ResnetBlock2D"])},
    )
    with pytest.raises(UnsupportedFormatError, match=r"cloneofsimo lora: injected classes"):
        read_adapter(path)


def test_cloneofsimo_lora_merges_like_lora_diffusion_applies_it(pipe, tmp_path):
    """On the tiny pipeline: merging the file adds up @ down (scale 1) to exactly the
    layers lora_diffusion's injection numbered."""
    import torch

    from tools.weights.apply import apply_merge
    from tools.weights.plan import MergePlan, WeightedExpert

    components = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    shapes = families.component_module_shapes(components)
    orders = {
        "unet": (UNET_CLASSES, lora_diffusion_order(pipe.unet, UNET_CLASSES, "unet")),
        "text_encoder": (
            TEXT_CLASSES,
            lora_diffusion_order(pipe.text_encoder, TEXT_CLASSES, "text_encoder"),
        ),
    }
    path = tmp_path / "tiny-cloneofsimo.safetensors"
    deltas = cloneofsimo_file(path, orders, shapes, rank=2, seed=5)
    before = {n: families.get_submodule(components, n).weight.detach().clone() for n in deltas}
    plan = MergePlan(loras=[WeightedExpert(path=path, coefficient=1.0)], normalize="strength")
    apply_merge(components, plan, backup="none")
    for name, delta in deltas.items():
        after = families.get_submodule(components, name).weight
        torch.testing.assert_close(after, before[name] + delta, atol=1e-5, rtol=1e-5)


def test_pickled_cloneofsimo_lists_load_with_allow_pickle(pipe, tmp_path):
    """``lora.pt`` / ``lora.text_encoder.pt`` (lora_diffusion's ``save_lora_weight``): a list
    of up, down tensors per injected layer; the component is the one every shape fits."""
    import torch

    from tools.weights.errors import PickleRefusedError
    from tools.weights.read import read_adapter

    components = {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    shapes = families.component_module_shapes(components)
    generator = torch.Generator().manual_seed(9)
    for component, classes, file in (
        ("unet", UNET_CLASSES, "lora.pt"),
        ("text_encoder", TEXT_CLASSES, "lora.text_encoder.pt"),
    ):
        names = lora_diffusion_order(components[component], classes, component)
        tensors, deltas = [], {}
        for name in names:
            out_features, in_features = shapes[name]
            up = torch.randn(out_features, 2, generator=generator).half()
            down = torch.randn(2, in_features, generator=generator).half()
            tensors += [up, down]
            deltas[name] = up.float() @ down.float()
        torch.save(tensors, tmp_path / file)
        adapter = read_adapter(tmp_path / file, targets=shapes, allow_pickle=True)
        assert adapter.format == "cloneofsimo-lora" and set(adapter.modules) == set(deltas)
        for name, delta in deltas.items():
            torch.testing.assert_close(adapter.modules[name].delta(), delta)
        with pytest.raises(PickleRefusedError):
            read_adapter(tmp_path / file, targets=shapes)
