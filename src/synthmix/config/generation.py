"""Params of the generators: the offline DDPM and its training, Stable Diffusion, prompts."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from synthmix.config.base import Section


class DDPMTrainingParams(Section):
    """A diffusers UNet2DModel DDPM and its training run (train_generator, seg_train_labels)."""

    resolution: int = Field(32, ge=8)
    block_out_channels: list[int] = Field(default=[16, 32, 32], min_length=1)
    layers_per_block: int = Field(1, ge=1)
    attention: bool = False
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0)
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    ema_decay: float = Field(0.999, ge=0, lt=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    seed: int = 0


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


class TrainGeneratorParams(DDPMTrainingParams):
    label_dropout: float = Field(0.1, ge=0, lt=1)


# FreeU factors of the prompt-strategy study, per model family (null in params.yaml = these)
FREEU_DEFAULTS = {
    "sd": {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2},
    "sdxl": {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4},
}


class FreeUParams(Section):
    """FreeU (re-weighting of UNet skip/backbone features); null factors = the family default."""

    enabled: bool = False
    b1: Optional[float] = Field(default=None, ge=0)
    b2: Optional[float] = Field(default=None, ge=0)
    s1: Optional[float] = Field(default=None, ge=0)
    s2: Optional[float] = Field(default=None, ge=0)

    def resolved(self, family: str) -> dict[str, float]:
        base = FREEU_DEFAULTS[family]
        return {k: float(getattr(self, k) if getattr(self, k) is not None else base[k]) for k in base}


class LoraParams(Section):
    path: str = Field(min_length=1)  # a LoRA .safetensors file, or a folder holding one
    scale: float = 1.0
    weight_name: Optional[str] = None  # file name inside a folder with several LoRA files
    classes: list[str] = []  # apply only when generating these classes (e.g. one LoRA per class); [] = all


class SDParams(Section):
    """Stable Diffusion settings (generate.backend sd or sdxl)."""

    # hub id (online or HF cache), local diffusers folder, or a single .safetensors/.ckpt file
    model: Optional[str] = None
    model_kind: Literal["auto", "folder", "single_file", "hub"] = "auto"
    # single-file checkpoints: a local diffusers folder (or hub id) with the component configs
    config: Optional[str] = None
    refiner: Optional[str] = None  # sdxl only: refiner model (same forms as model)
    refiner_switch: float = Field(0.8, gt=0, lt=1)  # fraction of steps done by the base model
    scheduler: Literal["dpmpp_2m_karras", "euler_a", "ddim"] = "dpmpp_2m_karras"
    steps: int = Field(30, ge=1)
    guidance_scale: float = Field(7.5, ge=0)
    width: Optional[int] = Field(default=None, ge=8)  # null = 512 (sd) / 1024 (sdxl)
    height: Optional[int] = Field(default=None, ge=8)
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"  # auto = fp16 on CUDA, fp32 on CPU
    freeu: FreeUParams = FreeUParams()
    loras: list[LoraParams] = []
    # images per pipeline call, always this many (the last call padded): a fixed shape keeps
    # each image independent of generate.batch_size, the resume point and the process count
    forward_batch: int = Field(8, ge=1)
    compile: bool = False  # torch.compile the UNet (pays off for large runs on a GPU)
    save_size: Optional[int] = Field(default=None, ge=8)  # also write a downsampled copy (square side)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), e.g. {v - v % 8 or 8}")
        return v


class PromptParams(Section):
    """Prompt templates (dynamicprompts syntax) for the text-to-image backends."""

    # {class} = the class text; __name__ = a line of wildcards_dir/name.txt; {a|b} = a variant
    template: str = Field("a photo of a {class}", min_length=1)
    class_templates: dict[str, str] = {}  # per-class overrides of template
    class_names: dict[str, str] = {}  # text for {class}; default: the label with _ as spaces
    suffix: str = ""  # appended after ", " (the source's Fp)
    negative: str = ""  # negative prompt (the source's Fn)
    wildcards_dir: str = "prompts/wildcards"


class GenerateParams(Section):
    backend: Literal["ddpm", "sd", "sdxl"] = "ddpm"
    per_class: int = Field(225, ge=1)
    steps: int = Field(20, ge=1)
    guidance_scale: float = Field(2.0, ge=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    write_threads: int = Field(2, ge=0)  # PNG encoding/writing threads beside sampling; 0 = inline
    sd: SDParams = SDParams()
    prompt: PromptParams = PromptParams()

    @model_validator(mode="after")
    def _sd_needs_a_model(self) -> "GenerateParams":
        if self.backend in ("sd", "sdxl") and not self.sd.model:
            raise ValueError(
                f"generate.backend = {self.backend} needs generate.sd.model: a hub id (with network or in the "
                "Hugging Face cache), a local diffusers folder, or a single .safetensors/.ckpt file"
            )
        if self.sd.refiner and self.backend != "sdxl":
            raise ValueError(f"generate.sd.refiner is set but generate.backend = {self.backend}: a refiner needs sdxl")
        return self
