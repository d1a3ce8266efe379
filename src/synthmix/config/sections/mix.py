"""``mix``: the training mixes of real and synthetic images."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator

from synthmix.config.base import Section, check
from synthmix.config.mixnames import CLASSIFICATION_KINDS, MixSpec, check_names


class MixParams(Section):
    # pctN: fixed total per class, N % synthetic; augN: all real + N % as many synthetic;
    # lrrN / grrN: pct0's real images, each swapped per draw with probability N/100 for a variant
    # of itself (lrr) or any synthetic image of its class (grr)
    names: list[str] = Field(min_length=1)
    # training images per class in pctN mixes; null = prepare.train_per_class
    per_class: Optional[int] = Field(ge=1)
    seed: int

    @field_validator("names")
    @classmethod
    def _mix_names(cls, v: list[str]) -> list[str]:
        return check_names(v, CLASSIFICATION_KINDS)


SCHEMA = MixParams


@check("mix", "prepare")
def _enough_real(p) -> None:
    per_class = p.mix.per_class or p.prepare.train_per_class
    specs = {n: MixSpec.parse(n) for n in p.mix.names}
    need = [(s.counts(per_class, p.prepare.train_per_class)[0], n)
            for n, s in specs.items() if s.kind == "pct" or s.is_swap]
    if need and max(need)[0] > p.prepare.train_per_class:
        n_real, worst = max(need)
        raise ValueError(
            f"mix {worst} with mix.per_class = {per_class} needs {n_real} real images per class, but "
            f"prepare.train_per_class = {p.prepare.train_per_class}: lower mix.per_class "
            "or raise prepare.train_per_class"
        )


@check("mix", "prepare", "generate")
def _enough_synthetic(p) -> None:
    per_class = p.mix.per_class or p.prepare.train_per_class
    need = {n: MixSpec.parse(n).counts(per_class, p.prepare.train_per_class)[1] for n in p.mix.names}
    worst = max(need, key=need.get)
    if need[worst] > p.generate.per_class:
        raise ValueError(
            f"mix {worst} needs {need[worst]} synthetic images per class, but generate.per_class = "
            f"{p.generate.per_class}: raise generate.per_class to at least {need[worst]}"
        )


CHECKS = [_enough_real, _enough_synthetic]
