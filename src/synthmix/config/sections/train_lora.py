"""``train_lora``: LoRA fine-tuning of generate.sd.model on real training images."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from synthmix.config.adapters import AdapterTrainingParams
from synthmix.config.base import FileParam


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
    caption_file: Annotated[Optional[str], FileParam()]
    caption_model: Annotated[Optional[str], FileParam()]

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


SCHEMA = TrainLoraParams
