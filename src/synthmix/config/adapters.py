"""The schema both Stable Diffusion personalisation trainers share (``train_lora``,
``train_textual_inversion``): the training images, their preparation and the run."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from synthmix.config.base import FileParam, Section
from synthmix.config.choices import LR_SCHEDULERS

LrSchedulerName = Literal[LR_SCHEDULERS]


class AdapterTrainingParams(Section):
    """What both trainers share: the training images, their preparation and the run."""

    # seeded choice from the real train split: this many per class; null = every image
    images_per_class: Optional[int] = Field(ge=1)
    resolution: Optional[int] = Field(ge=8)  # null = 512 (sd) / 1024 (sdxl); multiple of 8
    # small images are scaled up to the training resolution: bicubic, or Real-ESRGAN
    # (a user-supplied .pth/.safetensors loaded by the spandrel library)
    upsample: Literal["bicubic", "realesrgan"]
    realesrgan_weights: Annotated[Optional[str], FileParam()]
    lr: float = Field(gt=0)
    lr_scheduler: LrSchedulerName
    warmup_steps: int = Field(ge=0)
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"]  # CUDA only; the CPU trains in fp32
    checkpoint_every: int = Field(ge=0)  # optimiser steps between resumable checkpoints; 0 = none
    seed: int

    @model_validator(mode="after")
    def _checks(self):
        if self.resolution is not None and self.resolution % 8:
            raise ValueError(f"resolution = {self.resolution} must be a multiple of 8 (the VAE downsamples by 8)")
        if self.upsample == "realesrgan" and not self.realesrgan_weights:
            raise ValueError("upsample = realesrgan needs realesrgan_weights: a Real-ESRGAN .pth/.safetensors file "
                             "(e.g. RealESRGAN_x4plus.pth), loaded with spandrel")
        return self
