"""``fidelity``: FID, KID, precision/recall of the synthetic set."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from synthmix.config.base import Section


class FidelityParams(Section):
    """FID / KID / precision-recall (/ Inception Score) of the synthetic set vs the real train split."""

    # auto: torch-fidelity's original weights if cached, else the converted offline weights
    # (scripts/setup.sh), else download; original: insist on them (needed for Inception Score)
    weights: Literal["auto", "original", "converted"]
    download: bool  # allow torch-fidelity's download when no local weights are found
    image_size: int = Field(ge=8)  # every set is resized to this square side first (bicubic)
    max_per_class: Optional[int] = Field(ge=2)  # null = every image
    batch_size: int = Field(ge=1)  # images per Inception forward; 299 px activations grow with it
    kid_subsets: int = Field(ge=1)
    kid_subset_size: int = Field(ge=2)  # clipped to the smaller set (the value used is recorded)
    prc_neighborhood: int = Field(ge=1)  # k of the k-NN balls of precision/recall
    isc_splits: int = Field(ge=1)
    seed: int


SCHEMA = FidelityParams
