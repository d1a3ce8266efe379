"""Image-set manifests: one JSON object per line (JSONL).

Every image set (real split, synthetic set, mix) is described by a manifest. Required keys:

- ``path``: the image file, stored relative to the manifest's own directory (so a data tree
  can be moved or pulled elsewhere) and returned as an absolute path by :func:`read_manifest`;
- ``label``: the class name;
- ``source``: ``"real"`` or ``"synthetic"``;
- ``sha256``: the image file's content hash, so a manifest changes exactly when the images
  it points at change (DVC then re-runs what depends on it, and nothing else).

Synthetic records add the generator, model, seed and every sampling parameter. A mix is a
manifest whose records point into the real and synthetic sets: no image is ever copied.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

from synthmix.core.atomic import atomic_open
from synthmix.core.errors import DataError

REQUIRED_KEYS = ("path", "label", "source", "sha256")
SOURCES = ("real", "synthetic")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_record(rec: dict, where: str) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise DataError(f"{where}: record is missing {', '.join(missing)} (has: {', '.join(rec)})")
    if rec["source"] not in SOURCES:
        raise DataError(f"{where}: source must be one of {SOURCES}, got {rec['source']!r}")


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write ``records`` atomically; absolute or cwd-relative paths are re-rooted at the manifest."""
    path = Path(path)
    base = path.parent.resolve()
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            _check_record(rec, f"{path} line {n + 1}")
            out = dict(rec)
            out["path"] = Path(os.path.relpath(Path(rec["path"]).resolve(), base)).as_posix()
            fh.write(json.dumps(out, sort_keys=False) + "\n")
            n += 1
    return n


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a manifest; each record's ``path`` comes back absolute."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist: run the stage that writes it (dvc repro)")
    base = path.parent.resolve()
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno}: not valid JSON ({exc.msg})") from exc
            _check_record(rec, f"{path} line {lineno}")
            rec["path"] = os.path.normpath(base / rec["path"])
            records.append(rec)
    return records


def count_by_label(records: Iterable[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["label"] for r in records).items()))
