"""Tiny scorer checkpoints in the published file layouts, built in code (no download)."""

from __future__ import annotations

import json

import pytest
import torch

torch.set_num_threads(1)

BERT_WORDS = ["a", "an", "the", "of", "cat", "dog", "red", "blue", "photo", "painting", "portrait"]


def to_open_clip(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An HF CLIP state dict in OpenCLIP's naming (how HPS v2.1 ships), written out by hand."""
    out = {
        "logit_scale": hf["logit_scale"],
        "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": hf["text_model.final_layer_norm.weight"],
        "ln_final.bias": hf["text_model.final_layer_norm.bias"],
        "text_projection": hf["text_projection.weight"].T.contiguous(),
        "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
        "visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": hf["vision_model.pre_layrnorm.weight"],
        "visual.ln_pre.bias": hf["vision_model.pre_layrnorm.bias"],
        "visual.ln_post.weight": hf["vision_model.post_layernorm.weight"],
        "visual.ln_post.bias": hf["vision_model.post_layernorm.bias"],
        "visual.proj": hf["visual_projection.weight"].T.contiguous(),
    }
    for tower, prefix in (("text_model", ""), ("vision_model", "visual.")):
        i = 0
        while f"{tower}.encoder.layers.{i}.layer_norm1.weight" in hf:
            src, dst = f"{tower}.encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                    [hf[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                )
                out[f"{dst}attn.out_proj.{kind}"] = hf[f"{src}self_attn.out_proj.{kind}"]
                out[f"{dst}ln_1.{kind}"] = hf[f"{src}layer_norm1.{kind}"]
                out[f"{dst}ln_2.{kind}"] = hf[f"{src}layer_norm2.{kind}"]
                out[f"{dst}mlp.c_fc.{kind}"] = hf[f"{src}mlp.fc1.{kind}"]
                out[f"{dst}mlp.c_proj.{kind}"] = hf[f"{src}mlp.fc2.{kind}"]
            i += 1
    return out


@pytest.fixture(scope="session")
def tiny_clip():
    """The tiny CLIP saved in ``tiny_scorer_weights`` (same seed)."""
    from tools.tiny.clip import build_tiny_clip

    return build_tiny_clip(seed=0)


@pytest.fixture(scope="session")
def tiny_scorer_weights(tmp_path_factory):
    from tools.tiny.clip import save_tiny_scorer_weights

    return save_tiny_scorer_weights(tmp_path_factory.mktemp("scorers"))


@pytest.fixture(scope="session")
def clip_folder(tiny_scorer_weights):
    return tiny_scorer_weights["clip"]


@pytest.fixture(scope="session")
def aesthetic_head_file(tiny_scorer_weights):
    return tiny_scorer_weights["aesthetic_head"]


@pytest.fixture(scope="session")
def hps_folder(tiny_clip, clip_folder, tmp_path_factory):
    """A tiny OpenCLIP checkpoint named as HPS v2.1 ships, next to a CLIP tokenizer."""
    from safetensors.torch import save_file

    model, tokenizer = tiny_clip
    folder = tmp_path_factory.mktemp("hps")
    state = to_open_clip(model.state_dict())
    save_file(state, str(folder / "HPS_v2.1_compressed.safetensors"))
    tokenizer.save_pretrained(folder)
    return folder


def _bert_tokenizer(folder):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


@pytest.fixture(scope="session")
def image_reward_parts(tmp_path_factory):
    """Tiny BLIP towers + MLP, and their ImageReward-layout folder."""
    from safetensors.torch import save_file
    from transformers import BlipTextModel, BlipVisionConfig, BlipVisionModel

    from tools.scorers.blip import text_config
    from tools.scorers.clip_scorers import score_head

    folder = tmp_path_factory.mktemp("image-reward")
    tokenizer = _bert_tokenizer(folder)
    med = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "encoder_width": 768,  # BLIP's file says 768; BLIP builds the vision width (64 here)
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 40,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "pad_token_id": 0,
    }
    (folder / "med_config.json").write_text(json.dumps(med))
    torch.manual_seed(2)
    vision = BlipVisionModel(
        BlipVisionConfig(
            hidden_size=64,  # one 64-wide head, as the loader assumes (ViT-L/16: 1024 / 16)
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=1,
            image_size=32,
            patch_size=16,
            layer_norm_eps=1e-6,
        )
    ).eval()
    text = BlipTextModel(text_config(med, encoder_width=64), add_pooling_layer=False).eval()
    head = score_head(32).eval()
    state = {f"mlp.layers.{k}": v for k, v in head.state_dict().items()}
    state.update({f"blip.text_encoder.{k}": v for k, v in text.state_dict().items()})
    renames = {
        "embeddings.class_embedding": "cls_token",
        "embeddings.position_embedding": "pos_embed",
        "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
        "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
        "post_layernorm.weight": "norm.weight",
        "post_layernorm.bias": "norm.bias",
    }
    block = {
        "layer_norm1": "norm1",
        "layer_norm2": "norm2",
        "self_attn.qkv": "attn.qkv",
        "self_attn.projection": "attn.proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for key, value in vision.state_dict().items():
        if key in renames:
            name = renames[key]
        else:
            _, _, layer, *rest = key.split(".")
            module, kind = ".".join(rest[:-1]), rest[-1]
            name = f"blocks.{layer}.{block[module]}.{kind}"
        state[f"blip.visual_encoder.{name}"] = value
    state["blip.vision_proj.weight"] = torch.zeros(4, 64)  # present in the real file, unused
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(folder / "ImageReward.safetensors")
    )
    return {"folder": folder, "vision": vision, "text": text, "head": head, "tokenizer": tokenizer}


@pytest.fixture(scope="session")
def scorer_settings(clip_folder, aesthetic_head_file, hps_folder, image_reward_parts):
    from tools.settings import ScorerSettings

    return ScorerSettings(
        clip=clip_folder,
        aesthetic_head=aesthetic_head_file,
        hps_v21=hps_folder,
        pick_score=clip_folder,
        image_reward=image_reward_parts["folder"],
        metrics=["clip_score", "aesthetic", "image_reward", "hps_v21", "pick_score"],
        batch_size=3,
    )
