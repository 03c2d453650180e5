"""A tiny CLIP in the real ``transformers.CLIPModel`` layout, trained contrastively on world
image–caption pairs, so the project's CLIPScore and aesthetic code paths run unchanged on
meaningful weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tools.scorers.preprocess import clip_preprocess
from tools.world.data import make_set
from tools.world.judge import JUDGE_DOMAIN
from tools.world.models import TOKEN_WORDS, tokenize, world_tokenizer
from tools.world.progress import Progress, Resume, no_progress
from tools.world.scene import IMAGE_SIZE

WIDTH = 64
PROJECTION_DIM = 32


def world_clip_config():
    from transformers import CLIPConfig

    from tools.tiny.tokenizer import BOS, EOS, MAX_LENGTH, tiny_vocab

    vocab, _ = tiny_vocab(TOKEN_WORDS)
    common = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": 3,
              "num_attention_heads": 1, "hidden_act": "gelu"}  # fmt: skip
    ids = {"bos_token_id": vocab[BOS], "eos_token_id": vocab[EOS], "pad_token_id": vocab[EOS]}
    text = {**common, **ids, "vocab_size": len(vocab), "max_position_embeddings": MAX_LENGTH}
    vision = {**common, "image_size": IMAGE_SIZE, "patch_size": 4}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=PROJECTION_DIM)


def clip_features(model, pixels: torch.Tensor, ids: torch.Tensor):
    """Unit image and text embeddings of float images in [0, 1] and their token ids."""
    image = model.get_image_features(pixel_values=clip_preprocess(pixels, IMAGE_SIZE))
    text = model.get_text_features(input_ids=ids)
    image = F.normalize(getattr(image, "pooler_output", image), dim=-1)
    text = F.normalize(getattr(text, "pooler_output", text), dim=-1)
    return image, text


def train_clip(
    steps: int,
    seed: int,
    resume: Resume,
    n_images: int = 24_000,
    batch: int = 128,
    progress: Progress = no_progress,
):
    """``(CLIPModel, tokenizer)`` trained with the symmetric InfoNCE loss."""
    from transformers import CLIPModel

    data = make_set([JUDGE_DOMAIN], n_images, seed)
    tokenizer = world_tokenizer()
    ids = tokenize(tokenizer, data.captions)
    pixels = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(seed)
    model = CLIPModel(world_clip_config()).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    start = 0
    if (snap := resume.load()) is not None:
        model.load_state_dict(snap["model"])
        opt.load_state_dict(snap["opt"])
        sched.load_state_dict(snap["sched"])
        g.set_state(snap["rng"])
        start = snap["step"]
    for step in range(start, steps):
        idx = torch.randint(0, len(ids), (batch,), generator=g)
        image, text = clip_features(model, pixels[idx], ids[idx])
        logits = model.logit_scale.exp().clamp(max=100) * image @ text.T
        target = torch.arange(batch)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress("clip", step + 1, steps)
        state = {"model": model.state_dict(), "opt": opt.state_dict()}
        resume.save(step + 1, {**state, "sched": sched.state_dict(), "rng": g.get_state()})
    return model.eval(), tokenizer
