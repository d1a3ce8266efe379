"""How a run went, kept out of DVC's hashes: wall-clock seconds, throughput, device, library
versions, and what a resumed run reused.

A file a stage declares (an out, or ``metrics:`` / ``plots:`` with ``cache: false``) has its md5
in dvc.lock, so a value that differs between two runs of the same inputs (seconds, images/s,
how many images an interrupted run left behind) would give two machines, or two clones, a
different dvc.lock. Stages write such values with :func:`write_timings` next to their declared
metrics file, under ``metrics/timings/`` (:func:`timings_path`): in git like the other metrics,
declared by no stage, so no hash covers it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Mapping

from synthmix.core.atomic import write_json

TIMINGS = "timings"


def timings_path(metrics: str | os.PathLike) -> Path:
    """The timings file that belongs to the declared metrics file ``metrics``.

    ``metrics/generate.json`` -> ``metrics/timings/generate.json``;
    ``metrics/train/pct0-seed0/metrics.json`` (a DVCLive folder) -> ``metrics/timings/train/pct0-seed0.json``;
    a path without a ``metrics`` folder -> ``timings/<name>`` beside it.
    """
    p = Path(metrics)
    if p.name == "metrics.json" and p.parent.name:
        p = p.parent.parent / f"{p.parent.name}.json"
    parts = p.parts
    for i in range(len(parts) - 2, -1, -1):  # the innermost folder called metrics
        if parts[i] == "metrics":
            return Path(*parts[: i + 1], TIMINGS, *parts[i + 1 :])
    return p.parent / TIMINGS / p.name


def environment() -> dict:
    """Library versions and the Python version (they change float rounding, not results' meaning)."""
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version()}
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:  # pragma: no cover - a dependency of the package
        pass
    return env


def write_timings(metrics: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` (JSON-able) to :func:`timings_path` of ``metrics``; returns the path."""
    path = timings_path(metrics)
    write_json(path, dict(record))
    return path


def add_stage_seconds(metrics: str | os.PathLike, seconds: float, since: float) -> None:
    """Add ``stage_seconds`` (the stage function's whole run, without interpreter start-up) to
    the timings file of ``metrics``: merged into one this run wrote (modified after ``since``,
    a ``time.time()``), otherwise a new one, so no figure of an earlier run is kept beside it."""
    import json

    path = timings_path(metrics)
    record = {}
    try:
        if path.stat().st_mtime >= since - 1:  # 1 s of slack for coarse file-system clocks
            record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    write_json(path, {**record, "stage_seconds": round(seconds, 2)})


def split(record: Mapping[str, Any], keys: tuple[str, ...] | set[str]) -> tuple[dict, dict]:
    """(``record`` without ``keys``, the ``keys`` it had): declared fields and timing fields."""
    kept = {k: v for k, v in record.items() if k not in keys}
    moved = {k: record[k] for k in record if k in keys}
    return kept, moved
