"""``train_textual_inversion``: one learnt token per class for generate.sd.model."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.adapters import AdapterTrainingParams


class TrainTextualInversionParams(AdapterTrainingParams):
    num_vectors: int = Field(ge=1)  # embedding vectors per class token (<class>, <class>_1, ...)
    # class_name: start from the class name's token embeddings; any other value: that word's
    initializer: str = Field(min_length=1)
    steps: int = Field(ge=1)  # optimiser steps per class
    gradient_accumulation_steps: int = Field(ge=1)
    scale_lr: bool  # lr x batch_size x gradient_accumulation_steps (diffusers' --scale_lr)
    flip_p: float = Field(ge=0, le=1)  # random horizontal flip probability


SCHEMA = TrainTextualInversionParams
