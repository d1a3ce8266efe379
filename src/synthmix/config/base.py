"""The base of every params section: unknown keys are errors, values are frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

DEVICES = ("auto", "cpu", "cuda")  # the top-level `device` param: one choice for every stage


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def unique_names(v: list[str]) -> list[str]:
    """A field validator: class names must not repeat."""
    dupes = sorted({c for c in v if v.count(c) > 1})
    if dupes:
        raise ValueError(f"class names must be unique, repeated: {dupes}")
    return v
