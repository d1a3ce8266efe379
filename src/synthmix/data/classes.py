"""The one reader of ``classes.json`` (written by ``prepare`` and ``seg_prepare``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from synthmix.core.errors import DataError

MODES = {"L": 1, "RGB": 3}  # image mode -> channels


def read_class_info(path: str | os.PathLike) -> dict:
    """The whole ``classes.json``, checked: it exists, is JSON, and ``classes`` is a non-empty
    list of unique names; ``mode`` (if present) is L or RGB."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: run the stage that writes it first (e.g. dvc repro prepare)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg})") from exc
    classes = info.get("classes") if isinstance(info, dict) else None
    if not isinstance(classes, list) or len(classes) < 1 or len(set(classes)) != len(classes):
        raise DataError(f"{path}: 'classes' must be a non-empty list of unique names, got {classes!r}")
    if info.get("mode", "RGB") not in MODES:
        raise DataError(f"{path}: mode must be one of {sorted(MODES)}, got {info.get('mode')!r}")
    return {**info, "classes": [str(c) for c in classes]}


def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names in label order."""
    return read_class_info(path)["classes"]
