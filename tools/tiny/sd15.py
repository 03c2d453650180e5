"""A tiny Stable Diffusion 1.5: the real architecture with small channels, random weights.

Same block layout as SD 1.5 (4 UNet levels with cross-attention on the first three,
2 resnets per level, 12 CLIP text layers, 4 VAE levels), so its single-file checkpoint
has exactly the real LDM key names and its LoRAs the real module names; only widths
differ. One 64×64 image with 4 steps takes a fraction of a second on a CPU.
Everything built here is demo material: its images mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from graph.records import BaseFamily
from tools.tiny.tokenizer import (
    BOS,
    EOS,
    MAX_LENGTH,
    build_tiny_tokenizer,
    tiny_vocab,
    write_vocab_files,
)

IMAGE_SIZE = 64
TEXT_DIM = 32
UNET_CONFIG = {
    "sample_size": IMAGE_SIZE // 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (16, 32, 64, 64),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": TEXT_DIM,
    "attention_head_dim": 2,
    "norm_num_groups": 8,
}
VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (16, 32, 64, 64),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": IMAGE_SIZE,
}
DEMO_KEY = "diffgraph_demo"  # metadata key of single files, marker file name in folders
DEMO_METADATA = {DEMO_KEY: "tiny random weights; images mean nothing"}
SCHEDULER_CONFIG = {  # SD 1.5's noise schedule
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def text_encoder_config(words: tuple[str, ...] | None = None):
    from transformers import CLIPTextConfig

    vocab, _ = tiny_vocab(words) if words else tiny_vocab()
    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=12,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="quick_gelu",
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
    )


def build_tiny_sd15(seed: int = 0):
    """A ``StableDiffusionPipeline`` of the tiny SD 1.5 architecture, deterministic in ``seed``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    vae = AutoencoderKL(**VAE_CONFIG)
    text_encoder = CLIPTextModel(text_encoder_config())
    return assemble_sd15(unet, vae, text_encoder, build_tiny_tokenizer())


def assemble_sd15(unet, vae, text_encoder, tokenizer):
    """A ``StableDiffusionPipeline`` of the given components with SD 1.5's DDIM sampler."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class TinySD15Files:
    """Where :func:`save_tiny_sd15` wrote the tiny base model."""

    folder: (
        Path  # diffusers folder (model_index.json + components); also the config of the single file
    )
    single_file: Path  # LDM-layout .safetensors, what Civitai serves

    def load_single_file(self):
        """The pipeline read back from the single file (configs from ``folder``, offline)."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_single_file(
            str(self.single_file), config=str(self.folder), local_files_only=True
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe


def save_tiny_sd15(pipe, directory: Path) -> TinySD15Files:
    """Save ``pipe`` as a diffusers folder and as one LDM single-file ``.safetensors``."""
    directory = Path(directory)
    folder = directory / "tiny-sd15"
    pipe.save_pretrained(folder, safe_serialization=True)
    write_vocab_files(folder / "tokenizer")
    mark_demo_folder(folder)
    single = save_ldm_checkpoint(
        directory / "tiny-sd15.safetensors",
        pipe.unet.state_dict(),
        pipe.vae.state_dict(),
        pipe.text_encoder.state_dict(),
    )
    return TinySD15Files(folder=folder, single_file=single)


def save_ldm_checkpoint(
    path: Path,
    unet: dict[str, torch.Tensor],
    vae: dict[str, torch.Tensor],
    text_encoder: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    demo: bool = True,
) -> Path:
    """Write tiny SD 1.5 component state dicts as one LDM-layout ``.safetensors`` (atomically).

    The key layout is the weights toolkit's diffusers → LDM conversion for SD 1.5. ``demo``
    marks the file as tiny random weights (trained weights pass ``False``).
    """
    from tools.weights.convert import diffusers_to_ldm
    from tools.weights.files import save_tensors

    components = {"unet": unet, "vae": vae, "text_encoder": text_encoder}
    configs = {"unet": UNET_CONFIG, "vae": VAE_CONFIG}
    state = diffusers_to_ldm(components, BaseFamily.SD15, configs)
    marker = DEMO_METADATA if demo else {}
    save_tensors(state, Path(path), {**marker, **(metadata or {})})
    return Path(path)


def mark_demo_folder(folder: Path) -> None:
    """Leave the demo marker file in a diffusers folder written from tiny weights."""
    (Path(folder) / f"{DEMO_KEY}.txt").write_text(DEMO_METADATA[DEMO_KEY] + "\n")


def is_demo_model(path: Path) -> bool:
    """True for a folder or single file written from tiny demo weights."""
    path = Path(path)
    if path.is_dir():
        return (path / f"{DEMO_KEY}.txt").is_file()
    if path.suffix != ".safetensors":
        return False
    from tools.weights.files import read_metadata

    return DEMO_KEY in read_metadata(path)
