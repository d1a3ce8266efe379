"""seg_filter (FreeMask): wrong-label pixels become ignore_index, clean ones stay; pairs are
re-sampled in proportion to their hardness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from shipped_params import section
from synthmix.segmentation.data import load_mask, save_mask
from synthmix.segmentation.freemask import (
    freemask,
    resample_indices,
    train_scorer,
    write_preview,
)
from synthmix.segmentation.train import MEAN, STD

CLASSES = ["c0", "c1", "c2"]
LEVEL = 80  # class k is painted with red = 80 k


class RedOracle(nn.Module):
    """A fixed segmenter that reads the class off the red channel (undoing to_input's
    normalisation): it predicts the truth of every correctly painted pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * STD[0, 0] + MEAN[0, 0]) * 255
        levels = torch.arange(len(CLASSES), dtype=torch.float32) * LEVEL
        return -(((red[:, None] - levels[None, :, None, None]) / 40) ** 2)


def _paint(mask: np.ndarray) -> np.ndarray:
    image = np.zeros(mask.shape + (3,), np.uint8)
    image[..., 0] = (mask.astype(np.int64) * LEVEL).clip(0, 255)
    return image


def _mask(variant: int) -> np.ndarray:
    m = np.zeros((16, 16), np.uint8)
    m[:, 8:] = 1
    m[10 + variant % 3 :, :] = 2
    return m


def test_planted_wrong_labels_are_ignored_and_clean_pixels_kept(tmp_path):
    real_masks = np.stack([_mask(0), _mask(1)])
    real = (np.stack([_paint(m) for m in real_masks]), real_masks)
    images = np.stack([_paint(_mask(i)) for i in range(3)])  # every image shows its true map
    masks = np.stack([_mask(i) for i in range(3)])
    masks[1, 1:5, 1:5] = 2  # pair 1: a block labelled c2 where the image shows c0
    masks[1, 0, 0] = 255  # an already ignored pixel stays ignored and is not counted
    records = []
    for i in range(3):
        save_mask(masks[i], tmp_path / "in" / f"{i}.png")
        records.append({"path": str(tmp_path / f"img{i}.png"), "mask": str(tmp_path / "in" / f"{i}.png"),
                        "index": i, "source": "synthetic"})  # fmt: skip
    p = section("seg_filter", enabled=True, resample=False)
    out, stats, ignored = freemask(p, records, (images, masks), real, CLASSES, 255, tmp_path / "out", RedOracle())

    assert stats["pixels_ignored"] == 16 and stats["pairs_affected"] == 1
    assert stats["ignored_per_class"] == {"c0": 0, "c1": 0, "c2": 16}
    assert [r["mask"] for r in out[::2]] == [records[0]["mask"], records[2]["mask"]]  # clean pairs untouched
    filtered = load_mask(out[1]["mask"])
    expected = masks[1].copy()
    expected[1:5, 1:5] = 255
    assert np.array_equal(filtered, expected)  # the block is ignored, every clean pixel kept
    assert out[1]["unfiltered_mask"] == "../in/1.png" and out[1]["freemask"]["ignored_pixels"] == 16
    assert [j for j, _ in ignored] == [1]

    # class means from the synthetic pixels: the planted block still stands far above its class
    p_syn = section("seg_filter", enabled=True, resample=False, class_mean_from="synthetic")
    _, stats_syn, _ = freemask(p_syn, records, (images, masks), None, CLASSES, 255, tmp_path / "out2", RedOracle())
    assert stats_syn["ignored_per_class"]["c2"] == 16 and stats_syn["pixels_ignored"] == 16

    write_preview(images, masks, ignored, 2, [[0, 0, 0], [0, 255, 0], [0, 0, 255]], 255, tmp_path / "filter.png")
    assert (tmp_path / "filter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # re-sampling keeps the count, draws only input pairs and records the copies
    p_rs = section("seg_filter", enabled=True, resample=True, seed=3)
    out_rs, stats_rs, _ = freemask(p_rs, records, (images, masks), real, CLASSES, 255, tmp_path / "out3", RedOracle())
    assert len(out_rs) == 3 and {r["index"] for r in out_rs} <= {0, 1, 2}
    copies = {r["index"]: r["freemask"]["copies"] for r in out_rs}
    assert sum(copies.values()) == 3 and all(sum(r["index"] == i for r in out_rs) == c for i, c in copies.items())
    assert stats_rs["resample"]["unique_pairs"] == len(copies)


def test_harder_pairs_are_drawn_more_often():
    hardness = [1.0] * 500 + [3.0] * 500 + [0.0] * 10
    draws = resample_indices(hardness, 1.0, seed=0)
    copies = np.bincount(draws, minlength=len(hardness))
    assert len(draws) == len(hardness)
    assert copies[:500].mean() == pytest.approx(1010 / 2000, rel=0.15)
    assert copies[500:1000].mean() == pytest.approx(3 * 1010 / 2000, rel=0.1)
    assert copies[1000:].sum() == 0  # no loss left: nothing to learn, never drawn
    assert np.array_equal(draws, resample_indices(hardness, 1.0, seed=0))  # seeded
    uniform = np.bincount(resample_indices(hardness, 0.0, seed=0), minlength=len(hardness))
    assert abs(uniform[:500].mean() - uniform[500:1000].mean()) < 0.15  # power 0: hardness ignored


def test_scorer_is_trained_with_seg_train_recipe(tmp_path):
    masks = np.stack([_mask(i) for i in range(4)] * 2).repeat(2, 1).repeat(2, 2)  # 32 px
    images = np.stack([_paint(m) for m in masks])
    p = section("seg_filter", enabled=True, epochs=1)
    train_params = section("seg_train", batch_size=4)
    model, info = train_scorer(p, train_params, (images, masks), (images[:2], masks[:2]), 3, 255, torch.device("cpu"))
    assert info["model"] == "bisenetv2" and info["best_epoch"] == 1
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
