"""``qc``: quality control of the synthetic set before mixing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthmix.config.base import Section


class QCParams(Section):
    """Quality control of the synthetic set before mixing (off by default: no source study filters)."""

    enabled: bool
    # wrong-class filter: a ResNet-18 trained on the real train split (val split picks the epoch)
    wrong_class: bool
    confidence: float = Field(gt=0, lt=1)  # drop if another class gets probability above this
    epochs: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    input_size: int = Field(ge=16)
    # near-duplicates: phash = Hamming distance of 256-bit DCT hashes (imagehash); features = cosine
    # similarity of the QC classifier's penultimate features; none = keep duplicates
    dedup: Literal["none", "phash", "features"]
    phash_max_distance: int = Field(ge=0, le=256)  # Hamming distance of 256-bit hashes
    cosine_threshold: float = Field(gt=0, le=1)
    against_real: bool  # also drop synthetic images that duplicate a real training image
    # report (never drop) kept synthetic images whose pHash is within phash_max_distance of a real
    # *test* image: a leakage check of the evaluation, listed in metrics/qc/report.md
    against_test: bool
    sheet_max: int = Field(ge=1)  # dropped images shown in the report's contact sheet
    seed: int


SCHEMA = QCParams
