"""``train_generator``: the class-conditional DDPM trained on the real train split."""

from __future__ import annotations

from pydantic import Field, model_validator

from synthmix.config.ddpm import DDPMTrainingParams, unet_shape_problem


class TrainGeneratorParams(DDPMTrainingParams):
    label_dropout: float = Field(ge=0, lt=1)
    checkpoint_every: int = Field(ge=0)  # steps between resumable checkpoints (models/.partial); 0 = none

    @model_validator(mode="after")
    def _unet_shape(self) -> "TrainGeneratorParams":
        problem = unet_shape_problem("train_generator", self)
        if problem:
            raise ValueError(problem)
        return self


SCHEMA = TrainGeneratorParams
