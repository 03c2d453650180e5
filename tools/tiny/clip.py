"""A tiny CLIP (vision + text towers, ``transformers.CLIPModel``) for scorer tests and the demo."""

from __future__ import annotations

from pathlib import Path

import torch

from tools.tiny.sd15 import DEMO_METADATA, mark_demo_folder
from tools.tiny.tokenizer import (
    BOS,
    EOS,
    MAX_LENGTH,
    build_tiny_tokenizer,
    tiny_vocab,
    write_vocab_files,
)

IMAGE_SIZE = 32
WIDTH = 64  # one 64-wide attention head per tower, OpenCLIP's head width
PROJECTION_DIM = 16


def tiny_clip_config():
    from transformers import CLIPConfig

    vocab, _ = tiny_vocab()
    text = {
        "vocab_size": len(vocab),
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,
        "hidden_act": "gelu",
        "max_position_embeddings": MAX_LENGTH,
        "bos_token_id": vocab[BOS],
        "eos_token_id": vocab[EOS],
        "pad_token_id": vocab[EOS],
    }
    vision = {
        "hidden_size": WIDTH,
        "intermediate_size": 2 * WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,
        "hidden_act": "gelu",
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
    }
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=PROJECTION_DIM)


def build_tiny_clip(seed: int = 0):
    """``(CLIPModel, CLIPTokenizer)`` with random weights, deterministic in ``seed``."""
    from transformers import CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(tiny_clip_config()).eval(), build_tiny_tokenizer()


def save_tiny_clip(model, tokenizer, directory: Path) -> Path:
    """Save as a Hugging Face folder (weights, config, tokenizer), the way real CLIPs ship."""
    directory = Path(directory)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    write_vocab_files(directory)
    mark_demo_folder(directory)
    return directory


def save_tiny_scorer_weights(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Demo weights for the ``clip_score`` and ``aesthetic`` scorers (tiny, random).

    Returns the ``scorers`` settings that point to them: ``{"clip": folder,
    "aesthetic_head": file}``.
    """
    from safetensors.torch import save_file

    from tools.scorers.clip_scorers import score_head

    directory = Path(directory)
    model, tokenizer = build_tiny_clip(seed)
    folder = save_tiny_clip(model, tokenizer, directory / "tiny-clip")
    torch.manual_seed(seed + 1)
    head = {
        f"layers.{k}": v.contiguous() for k, v in score_head(PROJECTION_DIM).state_dict().items()
    }
    path = directory / "tiny-aesthetic-head.safetensors"
    save_file(head, str(path), metadata=DEMO_METADATA)
    return {"clip": folder, "aesthetic_head": path}
