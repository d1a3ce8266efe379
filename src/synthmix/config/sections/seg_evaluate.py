"""``seg_evaluate``: test mIoU of each segmentation run."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.base import Section


class SegEvaluateParams(Section):
    batch_size: int = Field(ge=1)
    overlay_count: int = Field(ge=1)


SCHEMA = SegEvaluateParams
