"""``fewshot``: the few-shot DA-Fusion branch (study 4)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from synthmix.config.base import Section, check
from synthmix.config.classifier import ClassifierParams

# baseline: the real subset with standard augmentation only; real_guidance: swaps for img2img
# variants made with the class name at one strength (He et al. 2023); dafusion: swaps for variants
# with randomized strengths and no class name in the prompt (Trabucco et al. 2024)
FEWSHOT_METHODS = ("baseline", "real_guidance", "dafusion")


class FewshotParams(Section):
    shots: list[int] = Field(min_length=1)  # examples per class (DA-Fusion: 1, 2, 4, 8, 16)
    trials: list[int] = Field(min_length=1)  # each trial: its own real subset and training seed
    methods: list[Literal[FEWSHOT_METHODS]] = Field(min_length=1)
    alpha: float = Field(gt=0, le=1)  # per-sample swap probability (DA-Fusion: 0.5)
    real_guidance_strength: float = Field(ge=0, le=1)  # He et al.: 0.5
    # an epoch visits this many samples (the subset repeated): k = 1 and k = 16 train as many steps
    samples_per_epoch: int = Field(ge=1)
    classifier: ClassifierParams
    confidence: float = Field(gt=0, lt=1)  # the summary's interval over trials
    seed: int  # which real images a trial draws: seeded by (seed, trial, class)

    @field_validator("shots", "trials")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"entries must be unique: {v}")
        return v

    @field_validator("shots")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError(f"examples per class must be at least 1: {v}")
        return v

    @field_validator("methods")
    @classmethod
    def _methods_unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"methods must be unique: {v}")
        return v


SCHEMA = FewshotParams


@check("fewshot", "prepare")
def _shots_available(p) -> None:
    if max(p.fewshot.shots) > p.prepare.train_per_class:
        raise ValueError(
            f"fewshot.shots asks for {max(p.fewshot.shots)} examples per class but prepare.train_per_class "
            f"= {p.prepare.train_per_class}: lower fewshot.shots or raise prepare.train_per_class"
        )


CHECKS = [_shots_available]
