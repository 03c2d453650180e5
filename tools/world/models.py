"""The world's models in the project's tiny SD 1.5 architecture, with the world's tokenizer.

Same UNet and CLIP text-encoder layout as :mod:`tools.tiny.sd15` (so every loader, key map,
LoRA format and merge works unchanged); the tokenizer adds the world's words as whole
tokens. The VAE has SD's blocks with one level fewer (4× downsampling): 32×32 images make
8×8×4 latents, the UNet's size, at a compression the tiny VAE can learn with colour intact.
The base trains its text encoder with the UNet (a frozen random encoder left the text
barely readable: a linear probe finds the colour in 66 % of its outputs); experts keep the
base's encoder frozen, as SD fine-tunes usually do.
"""

from __future__ import annotations

import torch

from tools.tiny.sd15 import SCHEDULER_CONFIG, UNET_CONFIG, VAE_CONFIG, text_encoder_config
from tools.tiny.tokenizer import WORDS, build_tiny_tokenizer
from tools.world.scene import IMAGE_SIZE
from tools.world.vocab import world_words

TOKEN_WORDS = tuple(dict.fromkeys((*WORDS, *world_words())))
WORLD_MARK = "diffgraph_world"  # metadata key of every file the world writes
WORLD_NOTE = "small trained world (32x32 shapes), not SD 1.5: images measure the method only"
WORLD_VAE_CONFIG = {
    **VAE_CONFIG,
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "block_out_channels": (16, 32, 64),
    "sample_size": IMAGE_SIZE,
}


def world_tokenizer():
    return build_tiny_tokenizer(TOKEN_WORDS)


def new_vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**WORLD_VAE_CONFIG)


def new_unet(seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**UNET_CONFIG)


def new_text_encoder(seed: int):
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(text_encoder_config(TOKEN_WORDS))


def noise_scheduler():
    from diffusers import DDPMScheduler

    keys = ("beta_start", "beta_end", "beta_schedule", "clip_sample", "steps_offset")
    return DDPMScheduler(num_train_timesteps=1000, **{k: SCHEDULER_CONFIG[k] for k in keys})


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids ``N × 77`` (padded with the end token, as SD 1.5 does)."""
    return tokenizer(
        captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids


def assemble_pipeline(unet, vae, text_encoder):
    """A ``StableDiffusionPipeline`` of the given components (DDIM sampler, world tokenizer)."""
    from tools.tiny.sd15 import assemble_sd15

    return assemble_sd15(unet, vae, text_encoder, world_tokenizer())
