"""``seg_generate_labels``: synthetic label maps and their post-processing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from synthmix.config.base import Section


class SegGenerateLabelsParams(Section):
    count: int = Field(ge=1)
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seed: int
    # post-processing (at the label resolution)
    ramp_tolerance: float = Field(gt=0, le=0.5)
    structuring_element: Literal["square", "cross", "disk"]
    element_size: int = Field(ge=1)
    min_island_size: int = Field(ge=0)
    neighbourhood: int = Field(ge=3)

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (a window centred on the pixel), e.g. 3 or 5")
        return v


SCHEMA = SegGenerateLabelsParams
