"""Leakage between the real splits: exact copies (same sha256) in train, val and test.

A test image that is also a training image scores what the model has seen; a validation copy
of a training image flatters the epoch choice. ``prepare`` and ``seg_prepare`` therefore look
up every record's content hash (the manifests record it anyway) across the splits, in the
order train, val, test: a record whose hash already occurs in an *earlier* split is a
duplicate. With ``duplicates: error`` (the default) the stage stops and names the files; with
``drop`` the copy is left out of the later split (the earlier one keeps it) and counted in the
stage's metrics. Copies within one split are no leakage and stay.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from synthmix.core.errors import DataError

log = logging.getLogger(__name__)

SHOWN = 20  # duplicates listed in an error message


def describe(rec: dict, split: str) -> str:
    """``split/label: origin`` (the source file or dataset index) or the written file's name."""
    where = rec.get("origin") or Path(rec["path"]).name
    return f"{split}/{rec['label']}: {where}"


def cross_split_duplicates(splits: Mapping[str, Sequence[dict]], key: str = "sha256") -> list[tuple[str, int, str, dict]]:
    """``(split, index in that split, earlier split, earlier record)`` for every record whose
    ``key`` already occurs in an earlier split (in the mapping's order)."""
    first: dict[str, tuple[str, dict]] = {}
    found = []
    for split, records in splits.items():
        here: dict[str, dict] = {}
        for i, rec in enumerate(records):
            h = rec[key]
            if h in first:
                found.append((split, i, *first[h]))
            else:
                here.setdefault(h, rec)
        for h, rec in here.items():
            first.setdefault(h, (split, rec))
    return found


def apply_duplicate_policy(
    splits: Mapping[str, Sequence[dict]], policy: str, param: str, key: str = "sha256"
) -> tuple[dict[str, list[dict]], list[dict], dict]:
    """Refuse (``policy`` "error": DataError naming the files and ``param``) or drop ("drop")
    records of a later split that copy a record of an earlier one.

    Returns (the kept records per split, the dropped records, stats for the metrics:
    ``{"policy", "dropped": {split: n}, "total_dropped"}``).
    """
    dups = cross_split_duplicates(splits, key)
    stats = {"policy": policy, "dropped": {s: 0 for s in splits}, "total_dropped": 0}
    if not dups:
        return {s: list(r) for s, r in splits.items()}, [], stats
    lines = [f"{describe(splits[s][i], s)} = {describe(rec, es)}" for s, i, es, rec in dups]
    if policy == "error":
        shown = "\n  ".join(lines[:SHOWN]) + (f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else "")
        raise DataError(
            f"{len(dups)} real image(s) of a later split are exact copies (same sha256) of images of an "
            f"earlier split (train, val, test order), so evaluation would score images the model trained "
            f"on:\n  {shown}\nRemove the copies from the source, or set {param}: drop to drop them from "
            "the later split (counted in the stage's metrics)"
        )
    drop = {(s, i) for s, i, _, _ in dups}
    kept = {s: [r for i, r in enumerate(recs) if (s, i) not in drop] for s, recs in splits.items()}
    dropped = [splits[s][i] for s, i, _, _ in dups]
    for s, _, _, _ in dups:
        stats["dropped"][s] += 1
    stats["total_dropped"] = len(dups)
    log.warning("%s: drop: %d exact copies left out of their later split:\n  %s", param, len(dups), "\n  ".join(lines))
    return kept, dropped, stats
