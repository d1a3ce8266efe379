"""``summarize``: the classification summary (differences and tests against a baseline mix)."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.base import Section, check


class SummarizeParams(Section):
    baseline: str
    confidence: float = Field(gt=0, lt=1)


SCHEMA = SummarizeParams


@check("summarize", "mix")
def _baseline_is_a_mix(p) -> None:
    if p.summarize.baseline not in p.mix.names:
        raise ValueError(f"summarize.baseline = {p.summarize.baseline!r} is not one of mix.names {p.mix.names}")


CHECKS = [_baseline_is_a_mix]
