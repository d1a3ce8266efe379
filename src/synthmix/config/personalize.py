"""Params of the personalization stages: LoRA (``train_lora``) and textual inversion
(``train_textual_inversion``) of the Stable Diffusion model that ``generate`` uses."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from synthmix.config.base import Section

# diffusers.optimization.get_scheduler names that need no extra arguments
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
LrSchedulerName = Literal[LR_SCHEDULERS]


class AdapterTrainingParams(Section):
    """What both trainers share: the training images, their preparation and the run."""

    # seeded choice from the real train split: this many per class; null = every image
    images_per_class: Optional[int] = Field(ge=1)
    resolution: Optional[int] = Field(ge=8)  # null = 512 (sd) / 1024 (sdxl); multiple of 8
    # small images are scaled up to the training resolution: bicubic, or Real-ESRGAN
    # (a user-supplied .pth/.safetensors loaded by the spandrel library)
    upsample: Literal["bicubic", "realesrgan"]
    realesrgan_weights: Optional[str]
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


class TrainLoraParams(AdapterTrainingParams):
    # instead of images_per_class (scope shared only): this many images in all, seeded choice
    images_total: Optional[int] = Field(ge=1)
    # per_class: one LoRA per class, applied only to its class; shared: one LoRA for every class
    scope: Literal["per_class", "shared"]
    rank: int = Field(ge=1)
    alpha: float = Field(gt=0)  # LoRA scale = alpha / rank
    train_text_encoder: bool  # also LoRA on the text encoder(s) attention (q/k/v/out_proj)
    optimizer: Literal["adafactor", "adamw", "adamw8bit"]
    max_grad_norm: float = Field(ge=0)  # 0 = no clipping
    epochs: int = Field(ge=1)
    repeats: int = Field(ge=1)  # each image this many times per epoch (kohya's folder repeats)
    random_flip: bool
    caption: Literal["template", "file", "blip"]
    caption_template: str = Field(min_length=1)
    caption_file: Optional[str]
    caption_model: Optional[str]

    @model_validator(mode="after")
    def _lora_checks(self):
        if self.images_total is not None and self.images_per_class is not None:
            raise ValueError("set images_per_class or images_total, not both (the other null)")
        if self.images_total is not None and self.scope != "shared":
            raise ValueError("images_total needs scope = shared (per_class LoRAs choose images_per_class)")
        if self.caption == "file" and not self.caption_file:
            raise ValueError("caption = file needs caption_file: a JSONL ({image, caption} per line) or CSV "
                             "(image,caption) file")
        if "{caption}" in self.caption_template and self.caption == "template":
            raise ValueError("caption_template uses {caption}, which only caption = file | blip provide")
        return self


class TrainTextualInversionParams(AdapterTrainingParams):
    num_vectors: int = Field(ge=1)  # embedding vectors per class token (<class>, <class>_1, ...)
    # class_name: start from the class name's token embeddings; any other value: that word's
    initializer: str = Field(min_length=1)
    steps: int = Field(ge=1)  # optimiser steps per class
    gradient_accumulation_steps: int = Field(ge=1)
    scale_lr: bool  # lr x batch_size x gradient_accumulation_steps (diffusers' --scale_lr)
    flip_p: float = Field(ge=0, le=1)  # random horizontal flip probability


class EraseParams(Section):
    """ESD concept erasing (Gandikota et al. 2023) of the SD UNet, DA-Fusion's model-centric
    leakage control (stage ``erase``; used when generate.sd.erased is true)."""

    method: Literal["full", "xattn", "noxattn"]  # which UNet weights train (DA-Fusion: full)
    iterations: int = Field(ge=1)
    lr: float = Field(gt=0)
    negative_guidance: float = Field(gt=0)  # eta of the ESD target
    start_guidance: float = Field(ge=0)  # guidance of the DDIM run that makes x_t
    ddim_steps: int = Field(ge=2)
    concept_template: str = Field(min_length=1)  # the erased text per class; {class} = the class text
    resolution: Optional[int] = Field(ge=8)  # null = 512
    seed: int
