"""seg_prepare: the real segmentation pairs, split train / val / test and written as PNGs.

Layout of ``out_dir``::

    images/<split>/<name>.png   masks/<split>/<name>.png (grey, class ids, ignore index)
    train.jsonl  val.jsonl  test.jsonl                   pair manifests (see .data)
    classes.json  {"classes", "ignore_index", "image_size", "source", "colors"}

The folder is built in a temporary sibling and renamed into place, so it is always complete;
re-running with the same params writes the same bytes. Exact copies of an image across the
splits stop the stage with the file names, or with ``seg_prepare.duplicates: drop`` leave the
later split (see :mod:`synthmix.data.leakage`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from synthmix.config import Params
from synthmix.core.atomic import building_dir, write_json
from synthmix.core.errors import DataError, SynthmixError
from synthmix.core.paths import Output
from synthmix.core.seeding import derive_seed
from synthmix.data.leakage import apply_duplicate_policy
from synthmix.data.sources import load_fashion_mnist_debian, match_classes
from synthmix.segmentation.data import (
    find_folder_pairs,
    load_folder_pair,
    pair_record,
    save_mask,
    save_rgb,
    split_indices,
    write_pairs,
)
from synthmix.segmentation.scenes import SceneSpec, item_pools, make_scene

if TYPE_CHECKING:
    from synthmix.config.sections.seg_prepare import SegPrepareParams

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def class_colors(n: int) -> list[list[int]]:
    """Distinct display colours for masks (background black), used by overlays."""
    base = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
            [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128]]  # fmt: skip
    rng = np.random.default_rng(0)
    while len(base) < n:
        base.append([int(v) for v in rng.integers(0, 256, 3)])
    return base[:n]


def prepare_segmentation(params: SegPrepareParams, out_dir: str | os.PathLike) -> dict:
    """Write the real pairs of ``params.source`` to ``out_dir``; return the stats for metrics."""
    with building_dir(out_dir) as tmp:
        if params.source == "fashion_mnist_scenes":
            stats, splits = _write_scenes(params, tmp)
        else:
            stats, splits = _write_folder_pairs(params, tmp)
        # exact copies across splits: refused (DataError naming the files) or dropped from the later split
        splits, dropped, stats["duplicates"] = apply_duplicate_policy(splits, params.duplicates, "seg_prepare.duplicates")
        for rec in dropped:
            Path(rec["path"]).unlink()
            Path(rec["mask"]).unlink()
        for split, records in splits.items():
            write_pairs(tmp / f"{split}.jsonl", records)
        stats["pairs"] = {split: len(records) for split, records in splits.items()}
        if stats["pairs"]["train"] == 0:
            raise DataError(f"no training pairs under {params.root}")
        n_classes = len(params.classes)
        for split in SPLITS:
            stats.setdefault("pixel_share", {})[split] = _pixel_share(tmp / "masks" / split, n_classes, params.ignore_index)
        write_json(tmp / "classes.json", {
            "classes": list(params.classes), "ignore_index": params.ignore_index,
            "image_size": params.image_size, "source": params.source, "colors": class_colors(n_classes),
        })  # fmt: skip
    return stats


def _pixel_share(mask_dir: Path, n_classes: int, ignore_index: int) -> dict:
    from PIL import Image

    counts = np.zeros(256, np.int64)
    for p in sorted(mask_dir.glob("*.png")):
        with Image.open(p) as im:
            counts += np.bincount(np.asarray(im).ravel(), minlength=256)
    total = max(1, int(counts.sum()))
    share = {str(c): round(float(counts[c]) / total, 5) for c in range(n_classes)}
    share["ignore"] = round(float(counts[ignore_index]) / total, 5)
    return share


def _write_scenes(params: SegPrepareParams, out: Path) -> dict:
    try:
        source = load_fashion_mnist_debian(params.root)
        class_ids = match_classes(params.classes[1:], source.class_names, source.name)
    except SynthmixError as exc:  # the shared readers name the classification keys: name ours
        msg = str(exc).replace("prepare.root", "seg_prepare.root")
        msg = msg.replace("set prepare.source to torchvision / image_folder", "use seg_prepare.source: folder_pairs")
        msg = msg.replace("prepare.classes", "seg_prepare.classes (after the background class)")
        raise type(exc)(msg) from exc
    counts = {"train": params.train_count, "val": params.val_count, "test": params.test_count}
    val_share = params.val_count / (params.train_count + params.val_count)
    pools = item_pools(source, class_ids, params.seed, val_share)
    spec = SceneSpec(params.image_size, tuple(params.items_per_scene), tuple(params.item_size),
                     params.silhouette_threshold)  # fmt: skip
    total = sum(counts.values())
    bar = tqdm(total=total, desc="seg_prepare scenes", unit="scene")
    splits: dict[str, list[dict]] = {}
    for split, n in counts.items():
        official = "test" if split == "test" else "train"
        records = []
        for i in range(n):
            rng = np.random.default_rng(derive_seed("seg-scene", params.seed, split, i))
            image, mask, items = make_scene(spec, source, official, pools[split], rng)
            name = f"{i:05d}.png"
            img_path, mask_path = out / "images" / split / name, out / "masks" / split / name
            save_rgb(image, img_path)
            save_mask(mask, mask_path)
            records.append(pair_record(img_path, mask_path, "real", split=split, items=items))
            bar.update()
        splits[split] = records
    bar.close()
    return {"source": params.source, "pairs": counts, "classes": list(params.classes)}, splits


def _write_folder_pairs(params: SegPrepareParams, out: Path) -> dict:
    pairs = find_folder_pairs(params.root)
    splits = split_indices(len(pairs), params.val_fraction, params.test_fraction, params.seed)
    n_classes = len(params.classes)
    bar = tqdm(total=len(pairs), desc="seg_prepare pairs", unit="pair")
    out_splits: dict[str, list[dict]] = {}
    for split in SPLITS:
        records = []
        for i in splits[split]:
            image_path, mask_path = pairs[int(i)]
            image, ids = load_folder_pair(image_path, mask_path, n_classes, params.ignore_index,
                                          params.palette, params.image_size, params.id_offset)  # fmt: skip
            name = f"{image_path.stem}.png"
            img_out, mask_out = out / "images" / split / name, out / "masks" / split / name
            save_rgb(image, img_out)
            save_mask(ids, mask_out)
            records.append(pair_record(img_out, mask_out, "real", split=split, origin=image_path.name))
            bar.update()
        out_splits[split] = records
    bar.close()
    return {"source": params.source, "pairs": {}, "classes": list(params.classes)}, out_splits


def seg_prepare_stage(params: Params, *, out: Output, metrics: Output) -> None:
    """Stage seg_prepare: the real segmentation pairs (image + id mask) in train/val/test splits."""
    from synthmix.core.atomic import write_json

    stats = prepare_segmentation(params.seg_prepare, out)
    write_json(metrics, stats)
    print(f"seg_prepare: {stats['pairs']} pairs in {out}")
