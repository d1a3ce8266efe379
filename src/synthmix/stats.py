"""The statistics the summaries report, in one place.

- :func:`mean_std_ci`: mean, sample standard deviation (``ddof=1``) and a Student-t confidence
  interval of the mean over training seeds (std and interval are None with one value);
- :func:`paired_t`: the paired t-test across seed-matched pairs (:func:`scipy.stats.ttest_rel`;
  None with fewer than two pairs or when every pair differs by the same amount);
- :func:`mcnemar_exact`: McNemar's exact test on the per-image correctness of two models on
  the same test images (:func:`scipy.stats.binomtest` on the discordant counts).

Used by the classification summary (:mod:`synthmix.reporting.classification`) and the segmentation
summary (:mod:`synthmix.reporting.segmentation`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from scipy import stats

from synthmix.core.errors import SynthmixError


def finite_or_none(x: Any) -> Optional[float]:
    """``float(x)``, or None if it is NaN or infinite (JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


def mean_std_ci(values: Sequence[float], confidence: float) -> dict:
    """Mean, sample std (ddof=1) and Student-t CI of the mean; std and CI are None for n < 2."""
    v = np.asarray(values, dtype=float)
    n = v.size
    if n == 0:
        raise SynthmixError("no values to summarize")
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def paired_t(mix_acc: Sequence[float], base_acc: Sequence[float]) -> dict:
    """Paired t-test across seed-matched pairs; statistic/p are None when it is undefined."""
    a = np.asarray(mix_acc, dtype=float)
    b = np.asarray(base_acc, dtype=float)
    diffs = a - b
    if diffs.size < 2:
        return {"statistic": None, "p": None, "note": f"{diffs.size} seed-matched pair(s): need at least 2"}
    if np.ptp(diffs) <= 1e-12:
        return {"statistic": None, "p": None, "note": "every seed differs by the same amount: no variance"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(a, b)
    t, p = finite_or_none(res.statistic), finite_or_none(res.pvalue)
    return {"statistic": t, "p": p, "note": None if p is not None else "undefined (NaN)"}


def mcnemar_exact(base_correct: np.ndarray, mix_correct: np.ndarray) -> dict:
    """McNemar's exact test on paired per-image correctness.

    ``baseline_only``: images the baseline got right and the mix wrong; ``mix_only``: the
    reverse. p is the two-sided binomial test of ``mix_only`` out of the discordant pairs
    at 0.5; with no discordant pairs the two models agree everywhere and p = 1.
    """
    base_correct = np.asarray(base_correct, dtype=bool)
    mix_correct = np.asarray(mix_correct, dtype=bool)
    b = int(np.sum(base_correct & ~mix_correct))
    c = int(np.sum(~base_correct & mix_correct))
    p = 1.0 if b + c == 0 else float(stats.binomtest(c, b + c, 0.5).pvalue)
    return {"baseline_only": b, "mix_only": c, "p": p}


def signed_rank(mix_scores: Sequence[float], base_scores: Sequence[float]) -> dict:
    """Wilcoxon signed-rank test of paired per-item scores (e.g. per-test-image mIoU of a mix
    against the baseline): median and mean difference, and the two-sided p (None when every
    difference is zero: the two agree everywhere)."""
    a = np.asarray(mix_scores, dtype=float)
    b = np.asarray(base_scores, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise SynthmixError(f"signed-rank test needs paired scores, got {a.size} and {b.size}")
    d = a - b
    out = {"n": int(d.size), "median_diff": float(np.median(d)), "mean_diff": float(d.mean()), "p": None}
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["p"] = finite_or_none(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return out
