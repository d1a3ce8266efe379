"""The typed schema of params.yaml, checked before any heavy work.

Every stage calls :func:`load_params` first. An error names the key, the bad value and what
is allowed, e.g. ``train.lr = -0.1: Input should be greater than 0``. Unknown keys are errors
too (a typo such as ``train.lrr`` would otherwise be silently ignored).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ParamsError

MIX_NAME = re.compile(r"^(pct|aug)(\d+)$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareParams(Section):
    source: Literal["fashion_mnist_debian", "torchvision", "image_folder"] = "fashion_mnist_debian"
    # torchvision dataset name, used when source is torchvision
    dataset: Literal["cifar10", "stl10", "fashion_mnist"] = "fashion_mnist"
    # Debian files dir / torchvision download dir / ROOT of ROOT/<class>/* images
    root: str = "/usr/share/datasets/fashion-mnist"
    download: bool = False
    classes: list[str] = Field(min_length=2)
    train_per_class: int = Field(ge=1)
    val_per_class: int = Field(ge=1)
    test_per_class: int = Field(ge=1)
    # square side for image_folder photos (resize shorter side + centre crop); null keeps size
    image_size: Optional[int] = Field(default=None, ge=8)
    skip_corrupt: bool = False
    seed: int = 0

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str]) -> list[str]:
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"class names must be unique, repeated: {dupes}")
        return v


class TrainGeneratorParams(Section):
    resolution: int = Field(32, ge=8)
    block_out_channels: list[int] = Field(default=[16, 32, 32], min_length=1)
    layers_per_block: int = Field(1, ge=1)
    attention: bool = False
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0)
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    label_dropout: float = Field(0.1, ge=0, lt=1)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    seed: int = 0


class GenerateParams(Section):
    backend: Literal["ddpm"] = "ddpm"
    per_class: int = Field(225, ge=1)
    steps: int = Field(20, ge=1)
    guidance_scale: float = Field(2.0, ge=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0


class MixParams(Section):
    # pctN: fixed total per class, N % synthetic; augN: all real + N % as many synthetic
    names: list[str] = Field(min_length=1)
    # training images per class in pctN mixes; null = prepare.train_per_class
    per_class: Optional[int] = Field(default=None, ge=1)
    seed: int = 0

    @field_validator("names")
    @classmethod
    def _mix_names(cls, v: list[str]) -> list[str]:
        for name in v:
            m = MIX_NAME.match(name)
            if not m:
                raise ValueError(
                    f"mix name {name!r} must be pctN (N % synthetic at a fixed total, 0..100) "
                    "or augN (all real plus N % as many synthetic images)"
                )
            if m.group(1) == "pct" and int(m.group(2)) > 100:
                raise ValueError(f"mix name {name!r}: a percentage of synthetic images is at most 100")
        if len(set(v)) != len(v):
            raise ValueError(f"mix names must be unique: {v}")
        return v


class TrainParams(Section):
    seeds: list[int] = Field(min_length=1)
    arch: Literal["resnet18"] = "resnet18"
    pretrained: bool = False
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    input_size: int = Field(32, ge=16)
    augment: bool = False
    num_threads: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class EvaluateParams(Section):
    batch_size: int = Field(256, ge=1)


class SummarizeParams(Section):
    baseline: str = "pct0"
    confidence: float = Field(0.95, gt=0, lt=1)


class Params(Section):
    prepare: PrepareParams
    train_generator: TrainGeneratorParams
    generate: GenerateParams
    mix: MixParams
    train: TrainParams
    evaluate: EvaluateParams = EvaluateParams()
    summarize: SummarizeParams = SummarizeParams()

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        per_class = self.mix.per_class or self.prepare.train_per_class
        real_need = [(per_class - fake_count(per_class, n), n) for n in self.mix.names if n.startswith("pct")]
        if real_need and max(real_need)[0] > self.prepare.train_per_class:
            need, worst = max(real_need)
            raise ValueError(
                f"mix {worst} with mix.per_class = {per_class} needs {need} real images per class, but "
                f"prepare.train_per_class = {self.prepare.train_per_class}: lower mix.per_class "
                "or raise prepare.train_per_class"
            )
        need_fake = max(synthetic_needed(n, per_class, self.prepare.train_per_class) for n in self.mix.names)
        if need_fake > self.generate.per_class:
            worst = max(self.mix.names, key=lambda n: synthetic_needed(n, per_class, self.prepare.train_per_class))
            raise ValueError(
                f"mix {worst} needs {need_fake} synthetic images per class, but generate.per_class = "
                f"{self.generate.per_class}: raise generate.per_class to at least {need_fake}"
            )
        if self.summarize.baseline not in self.mix.names:
            raise ValueError(
                f"summarize.baseline = {self.summarize.baseline!r} is not one of mix.names {self.mix.names}"
            )
        for c in self.train_generator.block_out_channels:
            if c % 8:
                raise ValueError(
                    f"train_generator.block_out_channels = {self.train_generator.block_out_channels}: "
                    "each entry must be a multiple of 8 (GroupNorm uses 8 groups)"
                )
        down = 2 ** (len(self.train_generator.block_out_channels) - 1)
        if self.train_generator.resolution % down:
            raise ValueError(
                f"train_generator.resolution = {self.train_generator.resolution} must be divisible by "
                f"{down} (2 ** (number of blocks - 1))"
            )
        return self


def fake_count(per_class: int, name: str) -> int:
    """Synthetic images per class in mix ``name`` (pctN rounds half up: 50 % of 225 = 113)."""
    kind, value = parse_mix_name(name)
    if kind == "pct":
        return (per_class * value + 50) // 100
    return 0  # aug: see synthetic_needed


def synthetic_needed(name: str, per_class: int, real_per_class: int) -> int:
    kind, value = parse_mix_name(name)
    if kind == "pct":
        return fake_count(per_class, name)
    return (real_per_class * value + 50) // 100


def parse_mix_name(name: str) -> tuple[str, int]:
    m = MIX_NAME.match(name)
    if not m:
        raise ParamsError(f"mix name {name!r} must look like pct60 or aug100")
    return m.group(1), int(m.group(2))


def _format_errors(exc: ValidationError, raw: dict, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            section = err["loc"][0] if len(err["loc"]) > 1 else None
            model = Params.model_fields[section].annotation if section in Params.model_fields else Params
            allowed = ", ".join(getattr(model, "model_fields", {}))
            lines.append(f"  {loc}: unknown key (allowed: {allowed})")
            continue
        if err["type"] == "missing":
            lines.append(f"  {loc}: required key is missing")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        msg = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if "expected" in ctx:
            msg = f"{msg} (allowed: {ctx['expected']})"
        lines.append(f"  {loc or '(top level)'}{shown}: {msg}")
    return "\n".join(lines)


def validate_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_errors(exc, raw, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stage from the repository root")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return validate_params(raw, str(path))
