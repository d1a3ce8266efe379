"""Stable Diffusion architectures with random weights, built from configs (no download).

Why: no SD weights exist offline, but speed does not depend on weight values and every code
path (saving, loading, prompts, schedulers, FreeU, LoRA, refiner) only needs the right
architecture. :func:`build_pipeline` makes SD 1.5 at full size (benchmarks/generation.py)
or tiny SD 1.x / SDXL / SDXL-refiner pipelines (tests), with the real CLIP tokenizer
rebuilt by :mod:`synthmix.testing.clip_vocab`. ``save_pretrained`` on the result gives a folder that
``generate.sd.model`` loads like a downloaded model.
"""

from __future__ import annotations

import os

import torch

# Noise schedule of SD 1.x / SDXL (scaled_linear betas 0.00085..0.012, 1000 steps)
SD_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    steps_offset=1, clip_sample=False, set_alpha_to_one=False, prediction_type="epsilon",
)


def _clip_text(hidden: int, layers: int, heads: int, inter: int, projection: bool, proj_dim: int | None = None,
               act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=77, projection_dim=proj_dim or hidden,
        hidden_act=act, bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def build_pipeline(kind: str, seed: int = 0, tokenizer_dir: str | os.PathLike | None = None):
    """A pipeline with random weights: ``sd15`` (full size), ``tiny_sd``, ``tiny_sdxl``, ``tiny_sdxl_refiner``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from synthmix.testing.clip_vocab import clip_tokenizer

    torch.manual_seed(seed)
    tok = clip_tokenizer(tokenizer_dir)
    if kind == "sd15":
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=512,
        )
        text = _clip_text(768, 12, 12, 3072, False)
        return StableDiffusionPipeline(
            vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=DDIMScheduler(**SD_SCHEDULER),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4, sample_size=32,
        norm_num_groups=32,
    )
    if kind == "tiny_sd":
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=4, norm_num_groups=32,
        )
        text = _clip_text(32, 2, 4, 37, False)
        return StableDiffusionPipeline(
            vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=DDIMScheduler(**SD_SCHEDULER),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    tok2 = clip_tokenizer(tokenizer_dir, pad_token="!")
    text2 = _clip_text(32, 2, 4, 37, True, 32, act="gelu")
    sdxl_unet = dict(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), norm_num_groups=32,
    )
    sched = EulerDiscreteScheduler(**{k: v for k, v in SD_SCHEDULER.items() if k not in ("clip_sample", "set_alpha_to_one")})
    if kind == "tiny_sdxl":
        unet = UNet2DConditionModel(**sdxl_unet, cross_attention_dim=64, projection_class_embeddings_input_dim=6 * 8 + 32)
        text = _clip_text(32, 2, 4, 37, False)
        return StableDiffusionXLPipeline(
            vae=vae, text_encoder=text, tokenizer=tok, text_encoder_2=text2, tokenizer_2=tok2, unet=unet,
            scheduler=sched, force_zeros_for_empty_prompt=True,
        )
    if kind == "tiny_sdxl_refiner":
        unet = UNet2DConditionModel(**sdxl_unet, cross_attention_dim=32, projection_class_embeddings_input_dim=5 * 8 + 32)
        return StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=text2, tokenizer_2=tok2, unet=unet,
            scheduler=sched, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        )
    raise ValueError(f"unknown architecture {kind!r}: sd15, tiny_sd, tiny_sdxl, tiny_sdxl_refiner")
