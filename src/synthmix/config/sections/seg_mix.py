"""``seg_mix``: the segmentation training mixes."""

from __future__ import annotations

from pydantic import Field, field_validator

from synthmix.config.base import Section, check
from synthmix.config.mixnames import SEGMENTATION_KINDS, MixSpec, check_names


class SegMixParams(Section):
    # repN: the real train size, N % of the pairs replaced by synthetic ones; addN: all real
    # pairs plus N % as many synthetic ones
    names: list[str] = Field(min_length=1)
    seed: int

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return check_names(v, SEGMENTATION_KINDS)


SCHEMA = SegMixParams


@check("seg_mix", "seg_prepare", "seg_generate_labels")
def _enough_synthetic(p) -> None:
    if p.seg_prepare.source != "fashion_mnist_scenes":
        return
    n_real = p.seg_prepare.train_count
    need = {n: MixSpec.parse(n, SEGMENTATION_KINDS).counts(n_real, n_real)[1] for n in p.seg_mix.names}
    worst = max(need, key=need.get)
    if need[worst] > p.seg_generate_labels.count:
        raise ValueError(
            f"seg_mix {worst} needs {need[worst]} synthetic pairs, but seg_generate_labels.count = "
            f"{p.seg_generate_labels.count}: raise it to at least {need[worst]}"
        )


CHECKS = [_enough_synthetic]
