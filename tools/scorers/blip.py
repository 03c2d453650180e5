"""ImageReward (BLIP ViT-L + BERT with cross-attention + MLP) on ``transformers`` BLIP classes.

The published ``ImageReward.pt`` names the towers as the BLIP repository does:
``blip.visual_encoder.blocks.{i}.attn.qkv`` (timm ViT), ``blip.text_encoder.encoder.layer.{i}
.crossattention…`` (BLIP's ``med.py`` BERT) and ``mlp.layers.{0,2,4,6,7}``. The text tower
keeps BERT's names in ``BlipTextModel``; the vision tower is renamed for ``BlipVisionModel``.
Score: the MLP of the text tower's first token, standardised by ImageReward's mean / std.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from tools.scorers.base import Scorer
from tools.scorers.clip_scorers import score_head
from tools.scorers.preprocess import clip_preprocess

REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
MAX_TOKENS = 35
_VISION_TOP = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
_VISION_BLOCK = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$")


def split_image_reward(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(vision, text, head) state dicts for BlipVisionModel, BlipTextModel and the MLP."""
    vision, text, head = {}, {}, {}
    for key, value in state.items():
        if key.startswith("blip.visual_encoder."):
            name = key.removeprefix("blip.visual_encoder.")
            if name in _VISION_TOP:
                vision[_VISION_TOP[name]] = value
            elif match := _BLOCK.match(name):
                layer, module, kind = match.groups()
                vision[f"encoder.layers.{layer}.{_VISION_BLOCK[module]}.{kind}"] = value
            else:
                raise KeyError(key)
        elif key.startswith("blip.text_encoder."):
            name = key.removeprefix("blip.text_encoder.")
            if not name.endswith("position_ids"):
                text[name] = value
        elif key.startswith("mlp.layers."):
            head[key.removeprefix("mlp.layers.")] = value
        # other BLIP parts (projections, momentum encoders, ITM head) are unused
    return vision, text, head


def vision_config(vision: Mapping[str, torch.Tensor], head_width: int = 64):
    """``BlipVisionConfig`` read off the tensors (ViT-L/16 at 224 for ImageReward)."""
    from transformers import BlipVisionConfig

    width = vision["embeddings.class_embedding"].shape[-1]
    patch = vision["embeddings.patch_embedding.weight"].shape[-1]
    grid = round((vision["embeddings.position_embedding"].shape[1] - 1) ** 0.5)
    layers = 1 + max(int(k.split(".")[2]) for k in vision if k.startswith("encoder.layers."))
    return BlipVisionConfig(
        hidden_size=width,
        intermediate_size=vision["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=width // head_width,
        image_size=grid * patch,
        patch_size=patch,
        layer_norm_eps=1e-6,  # timm ViT in BLIP
        hidden_act="gelu",
    )


def text_config(med_config: Mapping, encoder_width: int | None = None):
    """``BlipTextConfig`` from ImageReward's ``med_config.json`` (BERT + cross-attention).

    The cross-attention reads the vision tower: BLIP (``blip_pretrain.py``, which ImageReward
    builds) sets ``encoder_width`` to the vision width whatever the file says (768 in BLIP's
    ``med_config.json``, 1024 for ImageReward's ViT-L), so pass the vision width.
    """
    from transformers import BlipTextConfig

    return BlipTextConfig(
        vocab_size=med_config["vocab_size"],
        hidden_size=med_config["hidden_size"],
        encoder_hidden_size=encoder_width or med_config["encoder_width"],
        intermediate_size=med_config["intermediate_size"],
        num_hidden_layers=med_config["num_hidden_layers"],
        num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=med_config["max_position_embeddings"],
        layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
        hidden_act=med_config.get("hidden_act", "gelu"),
        pad_token_id=med_config.get("pad_token_id", 0),
        is_decoder=True,  # builds the cross-attention layers; called with is_decoder=False
    )


class ImageRewardScorer(Scorer):
    """ImageReward v1.0 (Xu et al. 2023), standardised as the reference implementation does."""

    metrics = ("image_reward",)

    def __init__(
        self, vision, text, head: torch.nn.Module, tokenizer, device: str = "cpu", demo=False
    ) -> None:
        self.vision = vision.eval().to(device)
        self.text = text.eval().to(device)
        self.head = head.eval().to(device)
        self.tokenizer = tokenizer
        self.device = device
        self.demo = demo

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], med_config: Mapping, tokenizer, **kwargs
    ) -> ImageRewardScorer:
        from transformers import BlipTextModel, BlipVisionModel

        vision_sd, text_sd, head_sd = split_image_reward(state)
        vision = BlipVisionModel(vision_config(vision_sd))
        text_cfg = text_config(med_config, encoder_width=vision.config.hidden_size)
        text = BlipTextModel(text_cfg, add_pooling_layer=False)
        head = score_head(text.config.hidden_size)
        vision.load_state_dict(vision_sd, strict=True)
        _load_text(text, text_sd)
        head.load_state_dict(head_sd, strict=True)
        return cls(vision, text, head, tokenizer, **kwargs)

    def _score(self, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        size = int(self.vision.config.image_size)
        pixels = clip_preprocess(images.to(self.device), size)
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.text(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], device=self.device),
            is_decoder=False,
        ).last_hidden_state
        reward = self.head(hidden[:, 0].float()).squeeze(-1)
        return {"image_reward": (reward - REWARD_MEAN) / REWARD_STD}


def _load_text(text, state: Mapping[str, torch.Tensor]) -> None:
    missing, unexpected = text.load_state_dict(dict(state), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KeyError(
            f"ImageReward text tower: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
