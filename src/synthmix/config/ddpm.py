"""The schema of a diffusers UNet2DModel DDPM and its training run, shared by ``train_generator``
(the class-conditional generator) and ``seg_train_labels`` (the label-map DDPM)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthmix.config.base import Section


class DDPMTrainingParams(Section):
    """A diffusers UNet2DModel DDPM and its training run (train_generator, seg_train_labels)."""

    resolution: int = Field(ge=8)
    block_out_channels: list[int] = Field(min_length=1)
    layers_per_block: int = Field(ge=1)
    attention: bool
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    num_train_timesteps: int = Field(ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
    ema_decay: float = Field(ge=0, lt=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"]
    seed: int


def unet_shape_problem(section: str, p: DDPMTrainingParams) -> str | None:
    """Why a UNet2DModel of these settings cannot be built, or None: GroupNorm needs channel
    counts in multiples of 8, and each block after the first halves the size."""
    if any(c % 8 for c in p.block_out_channels):
        return (f"{section}.block_out_channels = {p.block_out_channels}: "
                "each entry must be a multiple of 8 (GroupNorm uses 8 groups)")
    down = 2 ** (len(p.block_out_channels) - 1)
    if p.resolution % down:
        return f"{section}.resolution = {p.resolution} must be divisible by {down} (2 ** (number of blocks - 1))"
    return None
