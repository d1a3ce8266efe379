"""``seg_filter``: FreeMask filtering of the synthetic pairs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthmix.config.base import Section
from synthmix.config.choices import SEG_MODELS

SegModelName = Literal[SEG_MODELS]


class SegFilterParams(Section):
    """FreeMask (Yang et al., NeurIPS 2023): noisy synthetic pixels ignored, hard pairs re-sampled."""

    enabled: bool
    # the scoring segmenter (trained on the real train split with seg_train's settings)
    model: SegModelName
    epochs: int = Field(ge=1)
    # a synthetic pixel becomes ignore_index when its loss > tolerance_margin x its class's mean loss
    tolerance_margin: float = Field(gt=0)
    # where the class means come from: real (the real train pixels) | synthetic (all synthetic pixels)
    class_mean_from: Literal["real", "synthetic"]
    resample: bool
    hardness_power: float = Field(ge=0)
    preview_count: int = Field(ge=1)
    seed: int


SCHEMA = SegFilterParams
