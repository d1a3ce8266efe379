"""``generate``: the synthetic set (backend, sampling, Stable Diffusion, prompts, img2img)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator, model_validator

from synthmix.config.base import FileParam, Section, check
from synthmix.config.choices import BACKENDS, SCHEDULERS

# allowed values come from the name lists of the registries (config/choices.py)
BackendName = Literal[tuple(BACKENDS)]
SchedulerName = Literal[tuple(SCHEDULERS)]


# FreeU factors of the prompt-strategy study, per model family (null in params.yaml = these)
FREEU_DEFAULTS = {
    "sd": {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2},
    "sdxl": {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4},
}


class FreeUParams(Section):
    """FreeU (re-weighting of UNet skip/backbone features); null factors = the family default."""

    enabled: bool
    b1: Optional[float] = Field(ge=0)
    b2: Optional[float] = Field(ge=0)
    s1: Optional[float] = Field(ge=0)
    s2: Optional[float] = Field(ge=0)

    def resolved(self, family: str) -> dict[str, float]:
        base = FREEU_DEFAULTS[family]
        return {k: float(getattr(self, k) if getattr(self, k) is not None else base[k]) for k in base}


class LoraParams(Section):
    path: Annotated[str, FileParam()] = Field(min_length=1)  # a LoRA .safetensors file, or a folder holding one
    scale: float = 1.0
    weight_name: Optional[str] = None  # file name inside a folder with several LoRA files
    classes: list[str] = []  # apply only when generating these classes (e.g. one LoRA per class); [] = all


class SDParams(Section):
    """Stable Diffusion settings (generate.backend sd or sdxl)."""

    # hub id (online or HF cache), local diffusers folder, or a single .safetensors/.ckpt file
    model: Annotated[Optional[str], FileParam()]
    model_kind: Literal["auto", "folder", "single_file", "hub"]
    # single-file checkpoints: a local diffusers folder (or hub id) with the component configs
    config: Annotated[Optional[str], FileParam()]
    refiner: Annotated[Optional[str], FileParam()]  # sdxl only: refiner model (same forms as model)
    refiner_switch: float = Field(gt=0, lt=1)  # fraction of steps done by the base model
    scheduler: SchedulerName
    steps: int = Field(ge=1)
    guidance_scale: float = Field(ge=0)
    width: Optional[int] = Field(ge=8)  # null = 512 (sd) / 1024 (sdxl)
    height: Optional[int] = Field(ge=8)
    dtype: Literal["auto", "fp16", "bf16", "fp32"]  # auto = fp16 on CUDA, fp32 on CPU
    freeu: FreeUParams
    loras: list[LoraParams]
    # the train_lora stage's LoRAs (models/lora; per_class ones only for their own class)
    trained_lora: bool
    # the train_textual_inversion stage's class tokens (models/textual_inversion): {class} in
    # prompts becomes the class's token, unless the template places it with {token}
    textual_inversion: bool
    # the erase stage's UNet (models/erased), ESD-erased of every class concept (DA-Fusion's
    # model-centric leakage control); train_textual_inversion then learns tokens on it too
    erased: bool
    # images per pipeline call, always this many (the last call padded): a fixed shape keeps
    # each image independent of generate.batch_size, the resume point and the process count
    forward_batch: int = Field(ge=1)
    compile: bool  # torch.compile the UNet (pays off for large runs on a GPU)
    save_size: Optional[int] = Field(ge=8)  # also write a downsampled copy (square side)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), e.g. {v - v % 8 or 8}")
        return v


class PromptParams(Section):
    """Prompt templates (dynamicprompts syntax) for the text-to-image backends."""

    # {class} = the class text; __name__ = a line of wildcards_dir/name.txt; {a|b} = a variant
    template: str = Field(min_length=1)
    class_templates: dict[str, str]  # per-class overrides of template
    class_names: dict[str, str]  # text for {class}; default: the label with _ as spaces
    suffix: str  # appended after ", " (the source's Fp)
    negative: str  # negative prompt (the source's Fn)
    wildcards_dir: Annotated[str, FileParam()]


class Img2ImgParams(Section):
    """Image-to-image variants of real images (generate.mode img2img; the few-shot branch).

    DA-Fusion (Trabucco et al. 2024): ``per_image`` variants of each real image, each with a
    strength drawn from ``strengths`` with ``probs``, seeded by (seed, real image, variant).
    """

    per_image: int = Field(ge=1)  # M variants per real image (DA-Fusion: 10)
    strengths: list[float] = Field(min_length=1)  # t0 in [0, 1]: share of the schedule re-run
    probs: Optional[list[float]]  # null = uniform over strengths
    # data-centric leakage control: stop when a prompt names a class (sd/sdxl; the ddpm has none)
    forbid_class_names: bool

    @field_validator("strengths")
    @classmethod
    def _unit_interval(cls, v: list[float]) -> list[float]:
        bad = [s for s in v if not 0.0 <= s <= 1.0]
        if bad:
            raise ValueError(f"strengths must lie in [0, 1] (0 = the real image, 1 = from pure noise): {bad}")
        return v

    @model_validator(mode="after")
    def _probs_fit(self) -> "Img2ImgParams":
        if self.probs is not None:
            if len(self.probs) != len(self.strengths):
                raise ValueError(f"probs has {len(self.probs)} entries but strengths {len(self.strengths)}: one each")
            if any(p < 0 for p in self.probs) or abs(sum(self.probs) - 1.0) > 1e-6:
                raise ValueError(f"probs must be non-negative and sum to 1, got {self.probs}")
        return self


class GenerateParams(Section):
    backend: BackendName
    # txt2img: per_class images per class from noise; img2img: img2img.per_image variants of
    # every real training image (data/real/train.jsonl), for lrrN / grrN mixes
    mode: Literal["txt2img", "img2img"]
    per_class: int = Field(ge=1)
    steps: int = Field(ge=1)
    guidance_scale: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    seed: int
    write_threads: int = Field(ge=0)  # PNG encoding/writing threads beside sampling; 0 = inline
    sd: SDParams
    prompt: PromptParams
    img2img: Img2ImgParams

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


SCHEMA = GenerateParams


@check("generate", "prepare")
def _classes_known(p) -> None:
    lora_classes = {c for lo in p.generate.sd.loras for c in lo.classes}
    if lora_classes - set(p.prepare.classes):
        raise ValueError(
            f"generate.sd.loras name classes {sorted(lora_classes - set(p.prepare.classes))} that are "
            f"not in prepare.classes {p.prepare.classes}"
        )
    for key in ("class_templates", "class_names"):
        extra = sorted(set(getattr(p.generate.prompt, key)) - set(p.prepare.classes))
        if extra:
            raise ValueError(
                f"generate.prompt.{key} names classes {extra} that are not in prepare.classes {p.prepare.classes}"
            )


CHECKS = [_classes_known]
