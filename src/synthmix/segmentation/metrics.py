"""Segmentation scores: per-class IoU and mIoU with torchmetrics, and an overlay picture.

IoU of class c = |pred = c and true = c| / |pred = c or true = c| over all test pixels
(pixels with the ignore index are left out). mIoU is the mean over the classes that occur
in the ground truth or the prediction (a class absent from both has no defined IoU and is
reported as null), the usual convention of land-cover benchmarks.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchmetrics.classification import MulticlassConfusionMatrix

from synthmix.core.atomic import save_image


class IoUMeter:
    """Streams (pred, target) batches into a torchmetrics confusion matrix."""

    def __init__(self, n_classes: int, ignore_index: int | None):
        self.n = n_classes
        self.cm = MulticlassConfusionMatrix(num_classes=n_classes, ignore_index=ignore_index)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.cm.update(pred.reshape(-1).cpu().long(), target.reshape(-1).cpu().long())

    def compute(self) -> dict:
        cm = self.cm.compute().double()  # rows = true, cols = predicted
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        iou = [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(self.n)]
        defined = [v for v in iou if v is not None]
        total = float(cm.sum())
        return {
            "miou": float(np.mean(defined)) if defined else 0.0,
            "iou": iou,
            "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
            "pixels": int(total),
        }


def iou_scores(pred: torch.Tensor, target: torch.Tensor, n_classes: int, ignore_index: int | None = None) -> dict:
    """mIoU, per-class IoU and pixel accuracy of one set of predictions."""
    meter = IoUMeter(n_classes, ignore_index)
    meter.update(pred, target)
    return meter.compute()


def colorize(mask: np.ndarray, colors: Sequence[Sequence[int]], ignore_color=(255, 255, 255)) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[:] = ignore_color
    lut[: len(colors)] = np.asarray(colors, np.uint8)
    return lut[mask]


def overlay_grid(
    images: np.ndarray, truth: np.ndarray, pred: np.ndarray, colors: Sequence[Sequence[int]],
    path: str | os.PathLike, tile: int = 128,
) -> None:  # fmt: skip
    """A PNG with one row per sample: image | true mask | predicted mask | prediction over image."""
    rows = []
    for im, t, p in zip(images, truth, pred):
        cp = colorize(p, colors)
        blend = (0.5 * im.astype(np.float32) + 0.5 * cp).astype(np.uint8)
        row = np.concatenate([im, colorize(t, colors), cp, blend], axis=1)
        rows.append(row)
    grid = np.concatenate(rows, axis=0)
    scale = max(1, tile // images.shape[1])
    big = Image.fromarray(grid, mode="RGB").resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    save_image(big, path, compress_level=6)
