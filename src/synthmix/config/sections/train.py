"""``train``: one classifier run per mix and seed."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.classifier import ClassifierParams


class TrainParams(ClassifierParams):
    seeds: list[int] = Field(min_length=1)  # one run per mix and seed


SCHEMA = TrainParams
