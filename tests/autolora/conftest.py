"""AutoLoRA tests: a private tiny SD 1.5 pipeline and a synthetic LoRA set (demo data).

One torch thread keeps the tiny models from oversubscribing the shared cores.
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

ENCODER = {"d_model": 32, "layers": 1, "heads": 2}


@pytest.fixture(scope="session")
def pipe():
    """A tiny SD 1.5 pipeline owned by these tests (hooks are installed on it)."""
    from tools.tiny import build_tiny_sd15

    return build_tiny_sd15(seed=0)


@pytest.fixture(scope="session")
def shapes(pipe):
    """Linear layers the tiny LoRAs adapt: canonical name → weight shape."""
    from tools.tiny.experts import target_modules

    return {name: tuple(m.weight.shape) for name, m in target_modules(pipe).items()}


@pytest.fixture(scope="session")
def synthetic(shapes):
    """Training LoRAs (4 per concept) and held-out LoRAs of the same concepts (3 each)."""
    from tools.autolora.synthetic import synthetic_loras

    return synthetic_loras(shapes, 4, seed=0), synthetic_loras(shapes, 3, seed=1)


@pytest.fixture(scope="session")
def trained(synthetic, embedder):
    """An encoder trained 200 steps on the synthetic training LoRAs, with its result."""
    from tools.autolora.config import EncoderConfig, EncoderTrainConfig
    from tools.autolora.contrastive import EncoderExample, train_encoder
    from tools.autolora.tokens import lora_layers

    train, _ = synthetic
    examples = [EncoderExample(s.id, lora_layers(s.adapter), s.captions) for s in train]
    return train_encoder(
        examples,
        embedder.embed,
        EncoderConfig(**ENCODER),
        EncoderTrainConfig(steps=200, batch_size=12, lr=3e-3),
    )
