"""``seg_generate_images``: images for the synthetic label maps."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.base import Section


class SegGenerateImagesParams(Section):
    batch_size: int = Field(ge=1)
    seed: int


SCHEMA = SegGenerateImagesParams
