"""The offline scene set: real Fashion-MNIST photos pasted onto plain backgrounds.

No labelled segmentation data set can be installed offline (no hub is reachable), so the default
``seg_prepare`` builds one from real pixels: each scene is a plain background of one random
colour with 2..4 Fashion-MNIST items (random class among ``seg_prepare.classes[1:]``, random
size and position, later items occluding earlier ones). An item's mask is its own
silhouette: the pixels of the resized photo brighter than ``silhouette_threshold`` (the
photos are on black). Item pixels keep their measured grey level, multiplied by a random
tint so that colour is not a class cue. Train and validation scenes draw items from
disjoint parts of the official train split, test scenes from the official test split, so
no photo is shared between the training and test data.

It is a small, honest stand-in for a land-cover set: the same code path (image + id mask
pairs, ignore index, mIoU) with objects whose shapes, not colours, define the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from synthmix.core.seeding import derive_seed
from synthmix.data.sources import ArraySource


@dataclass(frozen=True)
class SceneSpec:
    size: int
    items_per_scene: tuple[int, int]
    item_size: tuple[int, int]
    threshold: int


def item_pools(source: ArraySource, class_ids: list[int], seed: int, val_share: float) -> dict[str, list[np.ndarray]]:
    """Per split, per item class, the Fashion-MNIST indices scenes may draw from.

    train / val: disjoint parts of the official train split (val gets ``val_share``);
    test: the official test split.
    """
    pools: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    train_labels, test_labels = source.labels("train"), source.labels("test")
    for cid in class_ids:
        idx = np.flatnonzero(train_labels == cid)
        idx = np.random.default_rng(derive_seed("seg-items", seed, cid)).permutation(idx)
        n_val = max(1, int(round(len(idx) * val_share)))
        pools["val"].append(np.sort(idx[:n_val]))
        pools["train"].append(np.sort(idx[n_val:]))
        pools["test"].append(np.flatnonzero(test_labels == cid))
    return pools


def make_scene(
    spec: SceneSpec, source: ArraySource, official_split: str, pools: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One scene: ``(H, W, 3)`` uint8 image, ``(H, W)`` uint8 mask (0 = background, k = pools[k-1]'s class)."""
    s = spec.size
    background = rng.integers(0, 256, size=3)
    image = np.empty((s, s, 3), np.float32)
    image[:] = background
    mask = np.zeros((s, s), np.uint8)
    n_items = int(rng.integers(spec.items_per_scene[0], spec.items_per_scene[1] + 1))
    items = []
    for _ in range(n_items):
        k = int(rng.integers(0, len(pools)))
        index = int(pools[k][rng.integers(0, len(pools[k]))])
        side = int(rng.integers(spec.item_size[0], spec.item_size[1] + 1))
        photo = source.load(official_split, index).convert("L").resize((side, side), Image.Resampling.BICUBIC)
        grey = np.asarray(photo, dtype=np.float32)
        silhouette = grey > spec.threshold
        tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
        y, x = int(rng.integers(0, s - side + 1)), int(rng.integers(0, s - side + 1))
        region = image[y : y + side, x : x + side]
        region[silhouette] = grey[silhouette, None] * tint
        mask[y : y + side, x : x + side][silhouette] = k + 1
        items.append({"class_id": k + 1, "fashion_mnist_index": index, "size": side, "x": x, "y": y})
    return np.clip(image.round(), 0, 255).astype(np.uint8), mask, items
