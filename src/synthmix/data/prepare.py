"""The real-data splits: a deterministic, stratified train / val / test selection written as PNGs.

Layout of ``out_dir``::

    images/<split>/<class>/<original-index-or-stem>.png
    train.jsonl  val.jsonl  test.jsonl     manifests (path, label, source, sha256, split, origin)
    classes.json                           {"classes": [...], "mode": "L" | "RGB", "source": ...}

Selection: each class has its own ``numpy`` Generator seeded with
``derive_seed("split", seed, class)`` (the normalised class name), so a class's images do not
change when other classes are added or reordered. Where the source has an official test split
(Fashion-MNIST, CIFAR-10, STL-10), test is drawn from it and train/val from the official train
split; an image folder is one pool split into disjoint train/val/test. Re-running with the same
params writes byte-identical files.

Exact copies across the splits (the same PNG bytes, by sha256) stop the stage with the file
names, or with ``prepare.duplicates: drop`` are left out of the later split (train, val, test
order) and counted in the stats (see :mod:`synthmix.data.leakage`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from synthmix.config import Params
from synthmix.core.atomic import PNG_OPTIONS, save_image, write_json
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Output
from synthmix.core.resume import prune
from synthmix.core.seeding import derive_seed
from synthmix.data.leakage import apply_duplicate_policy
from synthmix.data.manifest import file_sha256, write_manifest
from synthmix.data.sources import (
    ImageSource,
    match_classes,
    normalize_name,
    open_source,
)

if TYPE_CHECKING:
    from synthmix.config.sections.prepare import PrepareParams

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def split_plan(source: ImageSource, params: PrepareParams) -> list[tuple[str, list[tuple[str, int]]]]:
    """For each official split, the output splits drawn from it (in draw order) and their counts."""
    if source.has_test:
        return [
            ("train", [("train", params.train_per_class), ("val", params.val_per_class)]),
            ("test", [("test", params.test_per_class)]),
        ]
    return [("pool", [("train", params.train_per_class), ("val", params.val_per_class),
                      ("test", params.test_per_class)])]  # fmt: skip


def _shortage_message(cls: str, official: str, have: int, parts: list[tuple[str, int]], source: ImageSource) -> str:
    need = sum(n for _, n in parts)
    keys = [f"prepare.{split}_per_class" for split, _ in parts]
    sums = " + ".join(f"{n} ({split})" for split, n in parts)
    where = "images" if official == "pool" else f"images in the official {official} split of {source.name}"
    fix = f"lower {' / '.join(keys)}" + (" or add images to the class folder" if official == "pool" else "")
    return f"class {cls!r} has {have} {where}, but {sums} = {need} are needed: {fix}"


def _save_png(image, path: Path, mode: str) -> None:
    """Write pixels only (no ICC profile, EXIF or transparency key carried over), atomically."""
    image.info.clear()
    if image.mode != mode:
        image = image.convert(mode)
    save_image(image, path, **PNG_OPTIONS)


def _check_class_names(classes: list[str]) -> None:
    """Names that normalise to the same (or to nothing) would share one dataset class and folder."""
    seen: dict[str, str] = {}
    for name in classes:
        key = normalize_name(name)
        if not key:
            raise ParamsError(f"prepare.classes: {name!r} has no letters or digits")
        if key in seen:
            raise ParamsError(
                f"prepare.classes: {seen[key]!r} and {name!r} name the same class ({key!r} after "
                "lowercasing and reading non-alphanumerics as '_'); keep one"
            )
        seen[key] = name


def prepare_real(params: PrepareParams, out_dir: str | os.PathLike) -> dict:
    """Select, convert and write the real train/val/test splits; return the stats.

    Raises DataError (not enough images, missing class, unreadable file) or MissingAssetError
    (dataset not installed) before writing anything where it can be known up front.
    """
    out_dir = Path(out_dir)
    _check_class_names(params.classes)
    source = open_source(params)
    class_ids = match_classes(params.classes, source.class_names, source.name)
    plan = split_plan(source, params)

    # Check every class has enough images before writing anything.
    candidates: dict[tuple[str, str], np.ndarray] = {}
    shortages = []
    for cls, cid in zip(params.classes, class_ids):
        for official, parts in plan:
            idx = np.flatnonzero(source.labels(official) == cid)
            candidates[cls, official] = idx
            if len(idx) < sum(n for _, n in parts):
                shortages.append(_shortage_message(cls, official, len(idx), parts, source))
    if shortages:
        raise DataError("not enough images:\n  " + "\n  ".join(shortages))

    images_dir = out_dir / "images"
    records: dict[str, list[tuple[tuple[int, int], dict]]] = {s: [] for s in SPLITS}
    counts = {s: {c: 0 for c in params.classes} for s in SPLITS}
    skipped: list[str] = []
    total = len(params.classes) * (params.train_per_class + params.val_per_class + params.test_per_class)
    log.info("writing %d images of %d classes from %s to %s", total, len(params.classes), source.name, images_dir)

    with tqdm(total=total, desc="prepare", unit="img", dynamic_ncols=True) as bar:
        for ci, cls in enumerate(params.classes):
            rng = np.random.default_rng(derive_seed("split", params.seed, normalize_name(cls)))
            class_dir = normalize_name(cls)
            for official, parts in plan:
                order = rng.permutation(candidates[cls, official])
                targets = [split for split, n in parts for _ in range(n)]  # k-th accepted image -> split
                k = bad = 0
                for i in order:
                    if k == len(targets):
                        break
                    i = int(i)
                    try:
                        image = source.load(official, i)
                    except DataError as exc:
                        if not params.skip_corrupt:
                            raise DataError(
                                f"{exc}\nRemove or replace the file, or set prepare.skip_corrupt: true "
                                "to skip unreadable files (they are counted in the stats)"
                            ) from exc
                        log.warning("skipping unreadable file %s", source.origin(official, i))
                        skipped.append(source.origin(official, i))
                        bad += 1
                        continue
                    split = targets[k]
                    path = images_dir / split / class_dir / f"{source.stem(official, i)}.png"
                    _save_png(image, path, source.mode)
                    rec = {
                        "path": str(path),
                        "label": cls,
                        "source": "real",
                        "sha256": file_sha256(path),
                        "split": split,
                        "origin": source.origin(official, i),
                    }
                    records[split].append(((ci, i), rec))
                    counts[split][cls] += 1
                    k += 1
                    bar.update(1)
                if k < len(targets):
                    raise DataError(
                        _shortage_message(cls, official, len(order) - bad, parts, source)
                        + f" ({len(order)} files, {bad} unreadable and skipped)"
                    )

    rows = {split: [rec for _, rec in sorted(records[split], key=lambda kv: kv[0])] for split in SPLITS}
    # exact copies across splits: refused (DataError naming the files) or dropped from the later split
    rows, dropped, duplicates = apply_duplicate_policy(rows, params.duplicates, "prepare.duplicates")
    for rec in dropped:
        counts[rec["split"]][rec["label"]] -= 1
    for split in SPLITS:
        write_manifest(out_dir / f"{split}.jsonl", rows[split])
    write_json(out_dir / "classes.json", {"classes": list(params.classes), "mode": source.mode, "source": source.name})
    keep = {Path(rec["path"]) for split in SPLITS for rec in rows[split]}
    removed = prune(images_dir, keep, SPLITS)
    if removed:
        log.info("removed %d stale files of an earlier run from %s", removed, images_dir)
    if skipped:
        log.warning("skipped %d unreadable files (prepare.skip_corrupt: true)", len(skipped))

    stats = {
        "source": source.name,
        "mode": source.mode,
        "test_from": "official test split" if source.has_test else "pool",
        "counts": counts,
        "total": {s: sum(counts[s].values()) for s in SPLITS},
        "skipped_corrupt": len(skipped),
        "duplicates": duplicates,
    }
    log.info("wrote %s", ", ".join(f"{s} {n}" for s, n in stats["total"].items()))
    return stats


def prepare_stage(params: Params, *, out: Output, metrics: Output) -> None:
    """Stage prepare: the real train/val/test splits (images + manifests + classes.json)."""
    write_json(metrics, prepare_real(params.prepare, out))
