"""synthmix.stats: the numbers both summaries report (mean ± std, Student-t CI, paired t, McNemar).

The summaries' use of them (seeds, baselines, rendering) is tested in test_summary.py and
test_segmentation.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from synthmix.core.errors import SynthmixError
from synthmix.stats import finite_or_none, mcnemar_exact, mean_std_ci, paired_t

# ---------------------------------------------------------------- mean, std, CI


def test_ci_of_a_known_sample_matches_scipy():
    x = [0.81, 0.84, 0.79, 0.86, 0.83]
    r = mean_std_ci(x, 0.9)
    assert r["mean"] == pytest.approx(np.mean(x))
    assert r["std"] == pytest.approx(np.std(x, ddof=1))
    lo, hi = sps.t.interval(0.9, df=len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_one_value_has_no_spread_and_none_is_an_error():
    assert mean_std_ci([0.7], 0.95) == {"mean": 0.7, "std": None, "ci_low": None, "ci_high": None}
    with pytest.raises(SynthmixError, match="no values"):
        mean_std_ci([], 0.95)


def test_equal_values_give_a_zero_width_interval():
    r = mean_std_ci([0.5, 0.5, 0.5], 0.95)
    assert r == {"mean": 0.5, "std": 0.0, "ci_low": 0.5, "ci_high": 0.5}


# ---------------------------------------------------------------- paired t-test


def test_paired_t_matches_scipy():
    mix, base = [0.90, 0.92, 0.94, 0.91], [0.89, 0.90, 0.935, 0.915]
    r = paired_t(mix, base)
    ref = sps.ttest_rel(mix, base)
    assert r["statistic"] == pytest.approx(ref.statistic)
    assert r["p"] == pytest.approx(ref.pvalue)
    assert r["note"] is None


def test_paired_t_is_undefined_with_one_pair_or_no_variance():
    assert paired_t([0.9], [0.8]) == {"statistic": None, "p": None, "note": "1 seed-matched pair(s): need at least 2"}
    r = paired_t([0.91, 0.81], [0.9, 0.8])
    assert r["statistic"] is None and r["p"] is None and "no variance" in r["note"]


def test_finite_or_none():
    assert finite_or_none(np.float64(0.25)) == 0.25 and type(finite_or_none(np.float64(0.25))) is float
    assert finite_or_none(float("nan")) is None and finite_or_none(math.inf) is None


# ---------------------------------------------------------------- McNemar


def test_mcnemar_counts_and_exact_p_on_crafted_case():
    # 20 images: 10 both right, 2 only the baseline right, 8 only the mix right, 0 both wrong
    base = [True] * 10 + [True] * 2 + [False] * 8
    mix = [True] * 10 + [False] * 2 + [True] * 8
    res = mcnemar_exact(np.array(base), np.array(mix))
    assert res["baseline_only"] == 2 and res["mix_only"] == 8
    assert res["p"] == pytest.approx(2 * (1 + 10 + 45) / 2**10)  # 2 * P(X >= 8), X ~ B(10, 0.5)
    assert mcnemar_exact(np.array(base), np.array(base))["p"] == 1.0  # no discordant pairs


def test_mcnemar_exact_p_is_the_two_sided_binomial_and_symmetric():
    # 7 discordant pairs, 1 vs 6: p = 2 * P(X <= 1), X ~ B(7, 0.5) = 2 * (1 + 7) / 128
    base = np.array([True] * 5 + [True] + [False] * 6 + [False] * 3)
    mix = np.array([True] * 5 + [False] + [True] * 6 + [False] * 3)
    r = mcnemar_exact(base, mix)
    assert (r["baseline_only"], r["mix_only"]) == (1, 6)
    assert r["p"] == pytest.approx(16 / 128)
    swapped = mcnemar_exact(mix, base)
    assert (swapped["baseline_only"], swapped["mix_only"]) == (6, 1) and swapped["p"] == pytest.approx(r["p"])
    # balanced discordance: p = 1 (capped), not above it
    assert mcnemar_exact(np.array([True, False]), np.array([False, True]))["p"] == pytest.approx(1.0)


def test_summaries_use_these_functions():
    from synthmix.reporting import classification as cls_summary
    from synthmix.reporting import segmentation as seg_summary

    assert cls_summary.mean_std_ci is mean_std_ci and seg_summary.mean_std_ci is mean_std_ci
    assert cls_summary.paired_t is paired_t and cls_summary.mcnemar_exact is mcnemar_exact
