"""Generation tests run tiny models: one torch thread avoids oversubscribing the shared cores."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_sdxl_folder(tmp_path_factory):
    """A tiny SDXL pipeline (two text encoders, text-time embedding) saved as a folder."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from tools.tiny.sd15 import SCHEDULER_CONFIG, VAE_CONFIG, text_encoder_config
    from tools.tiny.tokenizer import build_tiny_tokenizer

    torch.manual_seed(0)
    config = text_encoder_config()
    config.num_hidden_layers = 2
    config.projection_dim = 32
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = {k: SCHEDULER_CONFIG[k] for k in ("beta_start", "beta_end", "beta_schedule")}
    pipe = StableDiffusionXLPipeline(
        vae=AutoencoderKL(**VAE_CONFIG),
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=build_tiny_tokenizer(),
        tokenizer_2=build_tiny_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**scheduler),
    )
    folder = tmp_path_factory.mktemp("tiny-sdxl") / "pipe"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_flux_folder(tmp_path_factory):
    """A tiny FLUX.1 pipeline (MM-DiT transformer, CLIP + T5 encoders) saved as a folder.

    Its second tokenizer is the tiny CLIP one: a T5 vocabulary cannot be made offline.
    """
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from tools.tiny.sd15 import text_encoder_config
    from tools.tiny.tokenizer import build_tiny_tokenizer

    torch.manual_seed(0)
    clip = text_encoder_config()
    clip.num_hidden_layers = 2
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[2, 2, 4],
    )
    t5 = T5EncoderModel(
        T5Config(vocab_size=clip.vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=CLIPTextModel(clip),
        tokenizer=build_tiny_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=build_tiny_tokenizer(),
        transformer=transformer,
    )
    folder = tmp_path_factory.mktemp("tiny-flux") / "pipe"
    pipe.save_pretrained(folder)
    return folder
