"""seg_summarize: the seed-paired comparison with the baseline mix and per-class IoU."""

from __future__ import annotations

import pytest
from scipy import stats

from synthmix.reporting.segmentation import markdown, summarize_seg, table1

SEEDS = [0, 1, 2]
BASE = [0.60, 0.64, 0.59]
MIX = [0.55, 0.62, 0.50]


def _runs():
    runs = {}
    for s in SEEDS:
        runs[("rep0", "bisenetv2", s)] = {"miou": BASE[s], "iou": [0.9, 0.4 + 0.1 * s, None if s == 0 else 0.5],
                                          "synthetic_pairs": 0, "train_pairs": 30}  # fmt: skip
        runs[("rep10", "bisenetv2", s)] = {"miou": MIX[s], "iou": [0.8, 0.3 + 0.1 * s, 0.2],
                                           "synthetic_pairs": 3, "train_pairs": 30}  # fmt: skip
    return runs


def test_paired_difference_and_per_class_deltas():
    out = summarize_seg(_runs(), ["rep0", "rep10"], ["bisenetv2"], SEEDS, "rep0", 0.95, ["bg", "a", "b"])
    base, mix = out["rows"]
    assert base["paired_vs_baseline"] is None
    pr = mix["paired_vs_baseline"]
    diffs = [m - b for m, b in zip(MIX, BASE)]
    assert pr["diffs"] == pytest.approx(diffs) and pr["mean"] == pytest.approx(sum(diffs) / 3)
    ref = stats.ttest_rel(MIX, BASE)
    assert pr["t_statistic"] == pytest.approx(ref.statistic) and pr["t_p"] == pytest.approx(ref.pvalue)
    half = stats.t.ppf(0.975, 2) * stats.tstd(diffs) / 3**0.5
    assert (pr["ci_low"], pr["ci_high"]) == pytest.approx((pr["mean"] - half, pr["mean"] + half))
    assert mix["iou_delta_vs_baseline"]["bg"] == pytest.approx(-0.1)
    assert mix["iou_delta_vs_baseline"]["a"] == pytest.approx(-0.1)
    # class b: seed 0 has no baseline IoU, so only seeds 1 and 2 are paired
    assert mix["iou_delta_vs_baseline"]["b"] == pytest.approx(-0.3)
    table = markdown(out)
    assert "| bisenetv2 | rep10 | 3 / 30 | 55.67 ± 6.03 |" in table
    assert f"| {ref.pvalue:.3g} |" in table and "paired Δ 95 % CI (pts)" in table
    assert "| bisenetv2 | rep10 | 80.00 (-10.00) | 40.00 (-10.00) | 20.00 (-30.00) |" in table


def test_table_1_layout_models_by_mixes():
    out = summarize_seg(_runs(), ["rep0", "rep10"], ["bisenetv2"], SEEDS, "rep0", 0.95, ["bg", "a", "b"])
    half = stats.t.ppf(0.975, 2) * stats.tstd(MIX) / 3**0.5
    lines = table1(out).splitlines()
    assert lines[0] == "| Model | rep0 | rep10 |"
    assert lines[2].startswith("| bisenetv2 | 61.00 ± ") and lines[2].endswith(f" | 55.67 ± {100 * half:.2f} |")
    assert markdown(out).startswith("mIoU (%) on the real test split, mean over 3 seeds ± half the 95 % interval")


def test_the_same_test_images_are_compared_image_by_image_with_a_signed_rank_test():
    import numpy as np

    rng = np.random.default_rng(0)
    base_img = rng.uniform(0.3, 0.9, (3, 40))  # 3 seeds x 40 test images
    runs = _runs()
    for s in SEEDS:
        runs[("rep0", "bisenetv2", s)]["per_image_miou"] = base_img[s].tolist()
        # the mix is 2 points worse on 30 images, 1 point better on 10
        runs[("rep10", "bisenetv2", s)]["per_image_miou"] = (base_img[s] + np.r_[[-0.02] * 30, [0.01] * 10]).tolist()
    out = summarize_seg(runs, ["rep0", "rep10"], ["bisenetv2"], SEEDS, "rep0", 0.95, ["bg", "a", "b"])
    img = out["rows"][1]["paired_vs_baseline"]["per_image"]
    mix_mean, base_mean = np.mean([runs[("rep10", "bisenetv2", s)]["per_image_miou"] for s in SEEDS], 0), base_img.mean(0)
    ref = stats.wilcoxon(mix_mean, base_mean)
    assert img["n"] == 40 and img["median_diff"] == pytest.approx(-0.02) and img["p"] == pytest.approx(ref.pvalue)
    assert img["p"] < 0.01
    table = markdown(out)
    assert "p (signed-rank, images)" in table and f"| -2.00 | {ref.pvalue:.3g} |" in table
    # identical per-image scores: no difference to test
    for s in SEEDS:
        runs[("rep10", "bisenetv2", s)]["per_image_miou"] = base_img[s].tolist()
    same = summarize_seg(runs, ["rep0", "rep10"], ["bisenetv2"], SEEDS, "rep0", 0.95, ["bg", "a", "b"])
    assert same["rows"][1]["paired_vs_baseline"]["per_image"]["p"] is None
