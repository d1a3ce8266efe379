"""``seg_train_labels``: the unconditional label-map DDPM."""

from __future__ import annotations

from pydantic import model_validator

from synthmix.config.base import check
from synthmix.config.ddpm import DDPMTrainingParams, unet_shape_problem


class SegTrainLabelsParams(DDPMTrainingParams):
    """The train_generator DDPM without classes (its own values in params.yaml, sized for label maps)."""

    @model_validator(mode="after")
    def _unet_shape(self) -> "SegTrainLabelsParams":
        problem = unet_shape_problem("seg_train_labels", self)
        if problem:
            raise ValueError(problem)
        return self


SCHEMA = SegTrainLabelsParams


@check("seg_train_labels", "seg_prepare")
def _fits_image(p) -> None:
    if p.seg_train_labels.resolution > p.seg_prepare.image_size:
        raise ValueError(f"seg_train_labels.resolution = {p.seg_train_labels.resolution} exceeds "
                         f"seg_prepare.image_size = {p.seg_prepare.image_size}")


CHECKS = [_fits_image]
