"""Which real images a few-shot run sees: ``k`` per class, drawn per trial, and the run names."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from synthmix.core.errors import DataError
from synthmix.core.seeding import derive_seed

REAL = "real.jsonl"
VARIANT_METHODS = ("real_guidance", "dafusion")  # the methods that need image-to-image variants


def run_name(shot: int, trial: int) -> str:
    return f"k{shot}-t{trial}"


def draw_subset(records: Sequence[dict], classes: Sequence[str], shot: int, seed: int, trial: int) -> list[dict]:
    """``shot`` real images per class: a permutation seeded by (seed, trial, class) cut at
    ``shot`` (so a trial's subsets are nested: its 1-shot image is in its 4-shot subset)."""
    out = []
    for cls in classes:
        pool = sorted((r for r in records if r["label"] == cls), key=lambda r: r["sha256"])
        if len(pool) < shot:
            raise DataError(f"fewshot: {shot} examples of class {cls!r} wanted, the real train split has "
                            f"{len(pool)}: lower fewshot.shots or raise prepare.train_per_class")
        order = np.random.default_rng(derive_seed("fewshot", seed, trial, cls)).permutation(len(pool))
        out.extend(pool[i] for i in order[:shot])
    return out
