"""What every params section shares: the frozen, strict base model, the marker of params that
name files, and cross-section checks.

Each top-level key of ``params.yaml`` has its own module in :mod:`synthmix.config.sections`
(``sections/train.py`` for ``train``), so a stage loads, checks and depends on the schema of
exactly the sections it reads (see :mod:`synthmix.config.loading`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def unique_names(v: list[str]) -> list[str]:
    """A field validator: class names must not repeat."""
    dupes = sorted({c for c in v if v.count(c) > 1})
    if dupes:
        raise ValueError(f"class names must be unique, repeated: {dupes}")
    return v


@dataclass(frozen=True)
class FileParam:
    """Field metadata (``Annotated[Optional[str], FileParam(...)]``): the value may name a local
    file or folder the stage reads. When it names one that exists, the stage refuses to run
    unless that path is one of its deps in ``dvc.yaml`` (else a new version of the file would
    not re-run it). ``keywords`` are values that name no file (``offline_imagenet``,
    ``torchvision``); a value that is no existing path is taken for a hub id or keyword."""

    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    """A check that spans sections: ``func(params)`` raises ValueError with a message naming the
    keys; it runs wherever every one of ``sections`` is loaded (a stage that reads them all, or
    ``python -m synthmix.config check``)."""

    sections: tuple[str, ...]
    func: Callable[[Any], None]


def check(*sections: str) -> Callable[[Callable[[Any], None]], Check]:
    """Decorator: ``CHECKS = [...]`` entries of a section module (see :class:`Check`)."""

    def wrap(func: Callable[[Any], None]) -> Check:
        return Check(tuple(sections), func)

    return wrap
