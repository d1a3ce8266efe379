"""``erase``: ESD concept erasing of generate.sd.model's UNet."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from synthmix.config.base import Section


class EraseParams(Section):
    """ESD concept erasing (Gandikota et al. 2023) of the SD UNet, DA-Fusion's model-centric
    leakage control (stage ``erase``; used when generate.sd.erased is true)."""

    method: Literal["full", "xattn", "noxattn"]  # which UNet weights train (DA-Fusion: full)
    iterations: int = Field(ge=1)
    lr: float = Field(gt=0)
    negative_guidance: float = Field(gt=0)  # eta of the ESD target
    start_guidance: float = Field(ge=0)  # guidance of the DDIM run that makes x_t
    ddim_steps: int = Field(ge=2)
    concept_template: str = Field(min_length=1)  # the erased text per class; {class} = the class text
    resolution: Optional[int] = Field(ge=8)  # null = 512
    seed: int


SCHEMA = EraseParams
