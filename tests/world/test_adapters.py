"""What the world trains is exactly what loads: each adapter format through its saved file."""

from __future__ import annotations

import pytest
import torch

from tools.weights.read import read_adapter
from tools.weights.write import save_adapter
from tools.world.adapters import AdapterSpec, TrainableAdapter
from tools.world.models import new_unet


@pytest.fixture(scope="module")
def unet():
    return new_unet(0)


@pytest.mark.parametrize(
    ("fmt", "file_format"),
    [("lora", "kohya"), ("locon", "kohya"), ("loha", "kohya"), ("lokr", "kohya"),
     ("dora", "kohya"), ("peft", "diffusers")],
)  # fmt: skip
def test_saved_file_holds_the_trained_delta(unet, tmp_path, fmt, file_format):
    adapter = TrainableAdapter(unet, AdapterSpec(fmt, rank=4), seed=1)
    with torch.no_grad():  # as after training: every factor non-zero
        for p in adapter.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    canonical = adapter.to_adapter({"ss_network_module": fmt})
    path = save_adapter(canonical, tmp_path / f"{fmt}.safetensors", format=file_format)
    loaded = read_adapter(path)
    assert set(loaded.modules) == set(canonical.modules)
    assert len(canonical.modules) == len(adapter.base)
    if fmt == "locon":
        assert any(".resnets." in name for name in canonical.modules)
    for name, module in canonical.modules.items():
        base = adapter.base[name.removeprefix("unet.")]
        expected = module.delta(base=base, shape=base.shape)
        got = loaded.modules[name].delta(base=base, shape=base.shape)
        assert torch.equal(got, expected), name
        trained = adapter.module(name.removeprefix("unet.")).delta(base=base, shape=base.shape)
        torch.testing.assert_close(got, trained.detach(), atol=2e-3, rtol=2e-2)
