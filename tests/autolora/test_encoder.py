"""The weight encoder: tokens from factors, padding, ranks, layer sets, contrastive training."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from tests.autolora.conftest import ENCODER
from tools.autolora.config import EncoderConfig
from tools.autolora.contrastive import build_encoder, info_nce
from tools.autolora.errors import AutoLoRAError
from tools.autolora.tokens import LoraLayers, layer_type_key, lora_layers, module_factors
from tools.weights.adapter import Adapter, AdapterModule


def _encoder(synthetic):
    from tools.autolora.contrastive import EncoderExample

    train, _ = synthetic
    torch.manual_seed(0)
    examples = [EncoderExample(s.id, lora_layers(s.adapter), s.captions) for s in train]
    return build_encoder(examples, EncoderConfig(**ENCODER)).eval()


def test_factors_are_the_scaled_delta():
    g = torch.Generator().manual_seed(0)
    lora = AdapterModule(
        kind="lora",
        factors={"up": torch.randn(6, 3, generator=g), "down": torch.randn(3, 5, generator=g)},
        alpha=1.5,
    )
    f = module_factors("unet.a.attn1.to_q", lora)
    assert torch.allclose(f.up @ f.down, lora.delta(), atol=1e-6)
    assert f.type_key == "unet.to_q:6x5"
    loha = AdapterModule(
        kind="loha",
        factors={
            k: torch.randn(s, generator=g)
            for k, s in {"w1_a": (6, 2), "w1_b": (2, 5), "w2_a": (6, 2), "w2_b": (2, 5)}.items()
        },
    )
    dense = module_factors("unet.b.to_out.0", loha)
    assert dense.down is None and torch.equal(dense.up, loha.delta())
    assert layer_type_key("unet.b.to_out.0", 6, 5) == "unet.to_out:6x5"


def test_padding_does_not_change_an_embedding(synthetic):
    encoder = _encoder(synthetic)
    train, held_out = synthetic
    adapter = train[9].adapter
    few = dataclasses.replace(adapter, modules=dict(list(adapter.modules.items())[:10]))
    loras = [lora_layers(a) for a in (train[0].adapter, held_out[5].adapter, few)]
    assert len({len(lora.layers) for lora in loras}) == 3  # different layer sets
    together = encoder.embed(loras)
    alone = torch.cat([encoder.embed([lora]) for lora in loras])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(together.norm(dim=1), torch.ones(3), atol=1e-6)


def test_rank_and_factorisation_do_not_matter(synthetic):
    """The same delta at rank 4, zero-padded to rank 8, or with rotated factors embeds the
    same: the encoder sees B·A, never the factors themselves."""
    encoder = _encoder(synthetic)
    adapter = synthetic[0][0].adapter
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))

    def rewrite(module: AdapterModule, padded: bool) -> AdapterModule:
        up, down = module.factors["up"] * module.scale, module.factors["down"]
        r = up.shape[1]
        up8 = torch.cat([up, torch.zeros(up.shape[0], 8 - r)], 1)
        down8 = torch.cat([down, torch.zeros(8 - r, down.shape[1])], 0)
        if not padded:
            up8, down8 = up8 @ rotation, rotation.T @ down8
        return AdapterModule(kind="lora", factors={"up": up8, "down": down8}, alpha=8.0)

    variants = [adapter] + [
        dataclasses.replace(
            adapter, modules={n: rewrite(m, padded) for n, m in adapter.modules.items()}
        )
        for padded in (True, False)
    ]
    vectors = encoder.embed([lora_layers(a) for a in variants])
    assert torch.allclose(vectors[0], vectors[1], atol=1e-5)
    assert torch.allclose(vectors[0], vectors[2], atol=1e-4)


def test_unknown_layers_are_skipped_and_none_known_is_an_error(synthetic):
    encoder = _encoder(synthetic)
    lora = lora_layers(synthetic[0][0].adapter)
    stranger = dataclasses.replace(lora.layers[0], name="unet.x.proj_out", up=torch.ones(7, 2))
    prepared = encoder.prepare(LoraLayers("mixed", (*lora.layers, stranger)))
    assert prepared.skipped == 1 and prepared.length == len(lora.layers)
    with pytest.raises(AutoLoRAError, match="none of its 1 layers has a type the encoder"):
        encoder.prepare(LoraLayers("odd.safetensors", (stranger,)))


def test_info_nce_values():
    eye = torch.eye(3)
    scale = torch.tensor(0.0)  # logit scale 1
    expected = -torch.log_softmax(eye, dim=1).diagonal().mean()
    assert torch.allclose(info_nce(eye, eye, scale), expected)
    # caption ids: rows 0 and 1 share a caption, so each is a positive of the other
    shared = info_nce(eye, eye, scale, torch.tensor([5, 5, 7]))
    log_p = torch.log_softmax(eye, dim=1)
    manual = -torch.stack([log_p[0, :2].mean(), log_p[1, :2].mean(), log_p[2, 2]]).mean()
    assert torch.allclose(shared, manual)
    a = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)))
    b = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(info_nce(a, b, scale), info_nce(b, a, scale))  # symmetric


def test_contrastive_training_separates_concepts(trained, synthetic, embedder):
    losses = trained.losses
    late = sum(losses[-20:]) / 20  # the loss falls
    assert late < 0.5 * losses[0] and late < 0.7 * sum(losses[:20]) / 20
    assert trained.top1 == 1.0
    _, held_out = synthetic  # new LoRAs: embedded without retraining
    vectors = trained.encoder.embed([lora_layers(s.adapter) for s in held_out])
    sims = vectors @ vectors.T
    pairs = list(itertools.combinations(range(len(held_out)), 2))
    same = [float(sims[i, j]) for i, j in pairs if held_out[i].concept == held_out[j].concept]
    other = [float(sims[i, j]) for i, j in pairs if held_out[i].concept != held_out[j].concept]
    assert min(same) > 0.8 and max(other) < 0.5 and min(same) > max(other) + 0.3
    concepts = list(dict.fromkeys(s.concept for s in held_out))
    first = {c: next(s for s in held_out if s.concept == c) for c in concepts}
    queries = torch.as_tensor(embedder.embed([first[c].captions[0] for c in concepts]))
    best = (queries @ vectors.T).argmax(1)
    assert [held_out[int(i)].concept for i in best] == concepts


def test_an_adapter_without_layers_of_the_vocabulary(synthetic):
    encoder = _encoder(synthetic)
    empty = Adapter(format="kohya-lora", family=None, modules={}, source="empty")
    with pytest.raises(AutoLoRAError, match="empty: none of its 0 layers"):
        encoder.embed([lora_layers(empty)])
