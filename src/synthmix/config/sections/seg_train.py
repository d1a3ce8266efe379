"""``seg_train``: the segmentation networks trained on each mix."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from synthmix.config.base import FileParam, Section
from synthmix.config.choices import SEG_MODELS, SEG_NATIVE_MODELS

SegModelName = Literal[SEG_MODELS]


class SegTrainParams(Section):
    models: list[SegModelName] = Field(min_length=1)
    # smp models only: the encoder and its weights (null: random init, offline; imagenet:
    # smp's ImageNet encoder weights, download or cache)
    encoder: str
    encoder_weights: Optional[Literal["imagenet"]]
    # bisenetv2 / ppliteseg_*: a local weights file (.safetensors or a torch state dict) for the
    # network's backbone; null = random init
    backbone_weights: Annotated[Optional[str], FileParam()]
    seeds: list[int] = Field(min_length=1)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    augment: bool

    @model_validator(mode="after")
    def _backbone_weights(self) -> "SegTrainParams":
        if self.backbone_weights is not None:
            smp = [m for m in self.models if m not in SEG_NATIVE_MODELS]
            if smp:
                raise ValueError(f"seg_train.backbone_weights is set, but {smp} are smp models, which take "
                                 "seg_train.encoder_weights instead: drop them from seg_train.models or set "
                                 "backbone_weights: null")  # fmt: skip
        return self


SCHEMA = SegTrainParams

