"""``seg_summarize``: the segmentation summary."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.base import Section, check


class SegSummarizeParams(Section):
    baseline: str
    confidence: float = Field(gt=0, lt=1)


SCHEMA = SegSummarizeParams


@check("seg_summarize", "seg_mix")
def _baseline_is_a_mix(p) -> None:
    if p.seg_summarize.baseline not in p.seg_mix.names:
        raise ValueError(
            f"seg_summarize.baseline = {p.seg_summarize.baseline!r} is not one of seg_mix.names {p.seg_mix.names}"
        )


CHECKS = [_baseline_is_a_mix]
