"""THE ANSWER: what synthetic training images are worth, from a table of training runs.

Input is one dict per training run (see :func:`design`): its condition, kind (``real``,
``retrieval``, ``pct``, ``aug``), real and synthetic images per class, the synthetic share,
the synthetic replicate it drew its synthetic images from (None without any), the classifier
seed and the accuracy on the real test split. :func:`answer` turns the table into one
JSON-ready dict; every building block is public and takes the runs (or a :class:`Design`).

**Models.** Accuracy on real data is modelled as a function of the number of images per class,
``f(n) = a + b ln n``, fitted by least squares on every real-only run (real and retrieval).
It is invertible when ``b > 0``: a synthetic mix with mean accuracy ``acc`` is worth
``n_eff = f^-1(acc) = exp((acc - a) / b)`` real images per class, and its *exchange rate*
is ``(n_eff - n_real) / n_synthetic`` real images per synthetic image (negative when the
synthetic images hurt). The pooled exchange rate ``w`` is one extra parameter of the same
curve, ``acc = a + b ln(n_real + w n_synthetic)``, fitted jointly with ``a, b`` on every run
(least squares profiled over a grid of ``w``, refined by golden-section search); where
``n_real + w n_synthetic`` would be below :data:`N_FLOOR` it is clipped there and flagged.
On the fixed-total grid (kind pct plus the 0 % control), accuracy is a quadratic in the
synthetic share; its argmax on [0, 1] is the best share and the end of the first stretch
on which it stays at or above its value at share 0 is the break-even share.

**Uncertainty.** One resampling scheme serves every estimate (:func:`bootstrap_weights`):
each draw resamples the classifier seed ids with replacement, once for all conditions (seed s
is the same head init and shuffling everywhere, so the pairing is kept), and the synthetic
replicate ids with replacement, once for all synthetic conditions (a replicate is one
synthetic set that every mix built from it shares). A draw is a weight per run (how often
its seed times how often its replicate was drawn), so every estimator is a weighted mean or
weighted least-squares fit evaluated for all draws at once with small matrix products;
intervals are percentiles of the draws. With 2 or 3 replicates this bootstrap sees only 2 or
3 replicate clusters: the variance of a mean over R resampled clusters is (R - 1) / R of the
unbiased one and no small-sample quantile widens it. With R = 2 and a replicate SD equal to
the run-to-run SD its 95 % intervals cover 74-84 % of the time, 64-72 % at twice that; with no
replicate variance they cover 94-99 % (benchmarks/answer_coverage.py, 5 seeds).
:func:`variance_components` estimates that ratio and :func:`answer` says in ``notes`` when it
is large for the number of replicates. ``interval="jackknife_t"`` instead deletes one seed and
one replicate at a time (:func:`jackknife_weights`, the same weighted estimators) and gives t
intervals with Satterthwaite's degrees of freedom (:func:`jackknife_t_interval`): honest about
the 1 or 2 degrees of freedom that R = 2 or 3 replicates carry, so much wider then, and
covering 89-99 % in every setting simulated.

**Confirmatory tests.** Every condition is compared with the baseline on the table of
differences ``D[r, s]`` = accuracy of the condition with replicate r and seed s minus the
baseline's with seed s (both conditions' replicates matched when both have them). The
default, ``two_way``, treats ``D`` as a two-way crossed random-effects layout (replicates x
seeds): the variance of its grand mean is ``s2_rep / R + s2_seed / S + s2_res / (R S)``,
estimated from the ANOVA mean squares (negative components truncated at zero) with
Satterthwaite's degrees of freedom, and gives a Student-t interval and p. It is the only
one of the four that accounts for both the replicate-to-replicate spread of the synthetic
sets and the baseline's own seed noise, which is shared by every replicate's difference.
The alternatives (``test=``): ``bootstrap`` (the hierarchical bootstrap's percentile
interval, p = twice the smaller tail of the draws around 0, floored at 1 / n_boot),
``paired_t`` (paired t over seeds on replicate-averaged accuracy; ignores the replicate
variance) and ``replicate_t`` (t over the per-replicate mean differences with R - 1 degrees
of freedom; ignores the baseline's seed noise that all replicates share). p-values are
Holm-adjusted across the conditions (:func:`holm`). Conditions with fewer than 3 runs get
their raw values instead of an interval. ``tied_with_best`` uses the same test, one-sided
(best minus share <= 0), Holm-adjusted across the shares. The price of calibration with
R = 2: whenever the two replicates' differences disagree by more than the run noise explains,
the replicate term has 1 degree of freedom and the test has little power (t quantile 12.7).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
from scipy import stats

KINDS = ("real", "retrieval", "pct", "aug")
REAL_KINDS = ("real", "retrieval")  # real images only (no synthetic ones)
SYNTHETIC_KINDS = ("pct", "aug")
TESTS = ("two_way", "bootstrap", "paired_t", "replicate_t")
DEFAULT_TEST = "two_way"
INTERVALS = ("bootstrap", "jackknife_t")  # for the estimates (the tests have their own)
N_FLOOR = 1.0  # images per class: the smallest n_eff / n_real + w n_synthetic the log curve is evaluated at
RATE_BOUNDS = (-1.0, 3.0)  # range searched for the pooled exchange rate
RATE_STEP = 0.05
MIN_RUNS_FOR_INTERVAL = 3
SHARE_GRID = np.round(np.linspace(0.0, 1.0, 101), 10)

Runs = Union[Sequence[Mapping[str, Any]], "Design"]


# --------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class Design:
    """The runs as arrays (one entry per run) plus the index sets the estimators need.

    ``conditions`` is in first-seen order; ``cond`` indexes it. ``seeds`` / ``replicates`` are
    the sorted distinct ids; ``seed_idx`` indexes ``seeds`` and ``rep_idx`` ``replicates``
    (-1 for runs without synthetic images).
    """

    runs: tuple
    condition: np.ndarray
    kind: np.ndarray
    n_real: np.ndarray
    n_syn: np.ndarray
    share: np.ndarray
    acc: np.ndarray
    seeds: tuple
    replicates: tuple
    seed_idx: np.ndarray
    rep_idx: np.ndarray
    conditions: tuple
    cond: np.ndarray

    @property
    def n(self) -> int:
        return int(self.acc.size)

    def cond_kind(self, c: str) -> str:
        return str(self.kind[self.cond == self.conditions.index(c)][0])

    def cond_first(self, c: str, field: str):
        return getattr(self, field)[self.cond == self.conditions.index(c)][0]

    def mask(self, kinds: Iterable[str]) -> np.ndarray:
        return np.isin(self.kind, tuple(kinds))


def design(runs: Runs) -> Design:
    """Validate the runs and turn them into a :class:`Design` (a Design is returned as is).

    Each run needs ``condition``, ``kind`` (one of :data:`KINDS`), ``n_real``, ``n_synthetic``,
    ``replicate`` (None exactly when ``n_synthetic`` is 0), ``seed`` and ``accuracy`` in
    [0, 1]; ``share`` is recomputed from the counts when absent. A (condition, replicate, seed)
    may occur once, and a condition has one kind and one (n_real, n_synthetic).
    """
    if isinstance(runs, Design):
        return runs
    runs = tuple(runs)
    if not runs:
        raise ValueError("no runs")
    cols: dict[str, list] = {k: [] for k in ("condition", "kind", "n_real", "n_syn", "share", "acc", "seed", "rep")}
    seen: set = set()
    shape: dict[str, tuple] = {}
    for i, r in enumerate(runs):
        missing = [k for k in ("condition", "kind", "n_real", "n_synthetic", "seed", "accuracy") if k not in r]
        if missing:
            raise ValueError(f"run {i}: missing {', '.join(missing)}")
        cond, kind = str(r["condition"]), str(r["kind"])
        if kind not in KINDS:
            raise ValueError(f"run {i} ({cond}): kind {kind!r} is not one of {', '.join(KINDS)}")
        n_real, n_syn = int(r["n_real"]), int(r["n_synthetic"])
        if n_real < 0 or n_syn < 0 or n_real + n_syn == 0:
            raise ValueError(f"run {i} ({cond}): n_real={n_real}, n_synthetic={n_syn}")
        if (kind in REAL_KINDS) != (n_syn == 0):
            raise ValueError(f"run {i} ({cond}): kind {kind} with n_synthetic={n_syn}")
        rep = r.get("replicate")
        if (rep is None) != (n_syn == 0):
            raise ValueError(f"run {i} ({cond}): replicate must be None exactly when there are no synthetic images")
        acc = float(r["accuracy"])
        if not 0.0 <= acc <= 1.0:
            raise ValueError(f"run {i} ({cond}): accuracy {acc} is not in [0, 1]")
        key = (cond, rep, r["seed"])
        if key in seen:
            raise ValueError(f"run {i}: condition {cond}, replicate {rep}, seed {r['seed']} occurs twice")
        seen.add(key)
        if shape.setdefault(cond, (kind, n_real, n_syn)) != (kind, n_real, n_syn):
            raise ValueError(f"condition {cond}: runs differ in kind or image counts")
        share = r.get("share")
        share = n_syn / (n_real + n_syn) if share is None else float(share)
        for k, v in zip(cols, (cond, kind, n_real, n_syn, share, acc, r["seed"], rep)):
            cols[k].append(v)
    seeds = tuple(sorted(set(cols["seed"])))
    reps = tuple(sorted({x for x in cols["rep"] if x is not None}))
    conditions = tuple(dict.fromkeys(cols["condition"]))
    return Design(
        runs=runs,
        condition=np.array(cols["condition"], dtype=object),
        kind=np.array(cols["kind"], dtype=object),
        n_real=np.array(cols["n_real"], dtype=float),
        n_syn=np.array(cols["n_syn"], dtype=float),
        share=np.array(cols["share"], dtype=float),
        acc=np.array(cols["acc"], dtype=float),
        seeds=seeds,
        replicates=reps,
        seed_idx=np.array([seeds.index(s) for s in cols["seed"]], dtype=int),
        rep_idx=np.array([-1 if x is None else reps.index(x) for x in cols["rep"]], dtype=int),
        conditions=conditions,
        cond=np.array([conditions.index(c) for c in cols["condition"]], dtype=int),
    )


# --------------------------------------------------------------------------- the bootstrap


def bootstrap_weights(runs: Runs, n_boot: int, seed: int = 0) -> np.ndarray:
    """The hierarchical bootstrap as an ``(n_boot, n_runs)`` matrix of run weights.

    Per draw, the classifier seed ids are resampled with replacement (one draw for every
    condition) and the synthetic replicate ids with replacement (one draw for every synthetic
    condition); a run's weight is how many times its seed was drawn times how many times its
    replicate was (1 for runs without synthetic images). A weighted estimator evaluated with
    these weights is the estimator on the resampled runs.
    """
    d = design(runs)
    rng = np.random.default_rng(seed)
    s, r = len(d.seeds), len(d.replicates)
    seed_counts = _counts(rng.integers(0, s, size=(n_boot, s)), s)
    rep_counts = np.ones((n_boot, r + 1))
    if r:
        rep_counts[:, :r] = _counts(rng.integers(0, r, size=(n_boot, r)), r)
    return seed_counts[:, d.seed_idx] * rep_counts[:, d.rep_idx]  # rep_idx -1 -> the column of ones


def _counts(idx: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], k))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), 1.0)
    return out


def _weights(d: Design, weights: Optional[np.ndarray]) -> np.ndarray:
    if weights is None:
        return np.ones((1, d.n))
    w = np.asarray(weights, dtype=float)
    return w[None, :] if w.ndim == 1 else w


def percentile_interval(draws: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """Percentile interval(s) of bootstrap draws along axis 0 (NaN draws ignored): ``[low, high]``."""
    q = 100 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    draws = np.asarray(draws, dtype=float)
    if np.isfinite(draws).all():
        return np.percentile(draws, q, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(np.where(np.isfinite(draws), draws, np.nan), q, axis=0)


def jackknife_weights(runs: Runs) -> np.ndarray:
    """Delete-one weights of the two-way jackknife: one row per classifier seed (that seed's runs
    weighted 0, in every condition), then one row per synthetic replicate (that replicate's runs
    weighted 0; only with at least 2 replicates). Shape ``(S + R, n_runs)``."""
    d = design(runs)
    rows = [(d.seed_idx != s).astype(float) for s in range(len(d.seeds))]
    if len(d.replicates) >= 2:
        rows += [(d.rep_idx != r).astype(float) for r in range(len(d.replicates))]
    return np.array(rows).reshape(len(rows), d.n)


def jackknife_t_interval(estimate: np.ndarray, deleted: np.ndarray, n_seeds: int, n_replicates: int,
                         confidence: float = 0.95) -> np.ndarray:
    """Two-way jackknife t interval(s): ``[low, high]`` along axis 0 (trailing axes vectorised).

    ``deleted`` holds the estimates from :func:`jackknife_weights`' rows (``n_seeds`` seed rows,
    then ``n_replicates`` replicate rows, none when fewer than 2 replicates). The variance is
    ``(S - 1) / S sum_s (t_-s - mean)^2 + (R - 1) / R sum_r (t_-r - mean)^2`` (the replicate term
    absent without replicates), the degrees of freedom Satterthwaite's from S - 1 and R - 1, and
    the interval ``estimate -+ t_df sqrt(var)``. NaN where a deleted estimate is NaN.
    """
    est = np.asarray(estimate, dtype=float)
    x = np.asarray(deleted, dtype=float)
    xs = x[:n_seeds]
    vs = (n_seeds - 1) / n_seeds * ((xs - xs.mean(0)) ** 2).sum(0)
    if n_replicates >= 2:
        xr = x[n_seeds:n_seeds + n_replicates]
        vr = (n_replicates - 1) / n_replicates * ((xr - xr.mean(0)) ** 2).sum(0)
    else:
        vr = np.zeros_like(vs)
    v = vs + vr
    with np.errstate(invalid="ignore", divide="ignore"):
        den = vs**2 / max(n_seeds - 1, 1) + (vr**2 / (n_replicates - 1) if n_replicates >= 2 else 0.0)
        df = np.where(den > 0, v * v / den, max(n_seeds - 1, 1))
    half = stats.t.ppf((1 + confidence) / 2, df) * np.sqrt(v)
    return np.stack([est - half, est + half])


# --------------------------------------------------------------------------- estimators (vectorised over draws)


def _wsum(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``w @ v`` for weight rows ``w`` (einsum: these products are small, and threaded BLAS is
    slow on a busy machine)."""
    return np.einsum("ij,j->i", w, v)


def _group_sums(w: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``w`` (rows x runs) per group id (0..n_groups-1): rows x n_groups."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    out = np.zeros((w.shape[0], n_groups))
    out[:, g[starts]] = np.add.reduceat(w[:, order], starts, axis=1)
    return out


def condition_means(runs: Runs, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Mean accuracy per condition (columns in ``design(runs).conditions`` order), one row per
    weight vector; NaN where a draw left a condition without runs."""
    d = design(runs)
    w = _weights(d, weights)
    k = len(d.conditions)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _group_sums(w * d.acc[None, :], d.cond, k) / _group_sums(w, d.cond, k)


def _wls_line(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares ``y = a + b x`` per row of ``w``: (a, b), NaN when x does not vary."""
    s0 = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = _wsum(w, x) / s0, _wsum(w, y) / s0
        sxx = _wsum(w, x * x) - s0 * mx * mx
        sxy = _wsum(w, x * y) - s0 * mx * my
        b = np.where(sxx > 1e-12 * np.maximum(s0, 1), sxy / sxx, np.nan)
    return my - b * mx, b


def fit_real_curve(runs: Runs, weights: Optional[np.ndarray] = None) -> dict:
    """Least squares ``accuracy = a + b ln(n_real)`` on the real and retrieval runs.

    Returns ``a``, ``b`` (arrays, one entry per weight row) and ``mask`` (the runs used: real-only
    runs with at least one real image).
    """
    d = design(runs)
    w = _weights(d, weights)
    mask = d.mask(REAL_KINDS) & (d.n_real > 0)
    a, b = _wls_line(w[:, mask], np.log(d.n_real[mask]), d.acc[mask])
    return {"a": a, "b": b, "mask": mask}


def real_curve_inverse(acc: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``f^-1(acc) = exp((acc - a) / b)`` in images per class; NaN where ``b <= 0``."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        z = np.where(b > 0, (acc - a) / b, np.nan)
        return np.exp(np.clip(z, -700, 700))


def exchange_rates(runs: Runs, weights: Optional[np.ndarray] = None) -> dict:
    """Per synthetic condition, the real images one synthetic image is worth on the real-only curve.

    ``n_eff = max(f^-1(mean accuracy), N_FLOOR)`` and ``rate = (n_eff - n_real) / n_synthetic``.
    Returns arrays (rows: weight rows, columns: ``conditions``): ``rate``, ``n_eff``,
    ``clipped`` (n_eff was below the floor), and ``conditions`` (the synthetic ones), ``a``, ``b``.
    """
    d = design(runs)
    w = _weights(d, weights)
    curve = fit_real_curve(d, w)
    means = condition_means(d, w)
    conds = [c for c in d.conditions if d.cond_kind(c) in SYNTHETIC_KINDS]
    cols = [d.conditions.index(c) for c in conds]
    nr = np.array([d.cond_first(c, "n_real") for c in conds])
    ns = np.array([d.cond_first(c, "n_syn") for c in conds])
    raw = real_curve_inverse(means[:, cols], curve["a"][:, None], curve["b"][:, None])
    clipped = raw < N_FLOOR
    n_eff = np.where(clipped, N_FLOOR, raw)
    return {"conditions": conds, "rate": (n_eff - nr) / ns, "n_eff": n_eff, "clipped": clipped, "a": curve["a"], "b": curve["b"]}


def fit_exchange_rate(
    runs: Runs,
    weights: Optional[np.ndarray] = None,
    *,
    kinds: Sequence[str] = SYNTHETIC_KINDS,
    bounds: tuple[float, float] = RATE_BOUNDS,
    step: float = RATE_STEP,
    tol: float = 1e-5,
) -> dict:
    """Least squares ``accuracy = a + b ln(max(n_real + w n_synthetic, N_FLOOR))`` on the real-only
    runs and the runs of the synthetic ``kinds``; ``w`` is the pooled exchange rate.

    ``a`` and ``b`` are linear given ``w``, so the residual sum of squares is profiled over ``w``:
    first on a grid (``bounds``, ``step``) for every weight row at once (matrix products), then
    by golden-section search between the grid neighbours of each row's minimum, to ``tol``.
    Returns arrays ``a``, ``b``, ``w``, ``rss`` and ``at_bound`` (the minimum is at an end of the
    grid: the rate may lie outside ``bounds``), ``mask`` (the runs of the fit) and ``clipped``:
    per run, whether its ``n_real + w n_synthetic`` (at row 0's w) was below the floor.
    """
    d = design(runs)
    wt = _weights(d, weights)
    mask = (d.mask(REAL_KINDS) & (d.n_real > 0)) | d.mask(kinds)
    y = d.acc[mask]
    y0 = y.mean()
    y = y - y0
    wm = wt[:, mask]
    # runs of a condition share (n_real, n_synthetic): work with per-condition sums of weights
    # and of weighted accuracies (rows x conditions) instead of rows x runs
    conds, inv = np.unique(d.cond[mask], return_inverse=True)
    wc, wyc = _group_sums(wm, inv, conds.size), _group_sums(wm * y[None, :], inv, conds.size)
    nr = np.array([d.n_real[d.cond == c][0] for c in conds])
    ns = np.array([d.n_syn[d.cond == c][0] for c in conds])
    s0 = wc.sum(1)
    grid = np.arange(bounds[0], bounds[1] + step / 2, step)
    x = np.log(np.maximum(nr[:, None] + grid[None, :] * ns[:, None], N_FLOOR))  # conditions x grid
    with np.errstate(invalid="ignore", divide="ignore"):
        my = wyc.sum(1) / s0
        syy = _wsum(wm, y * y) - s0 * my**2
        # einsum rather than BLAS, as in _wsum
        mx = np.einsum("ij,jk->ik", wc, x) / s0[:, None]
        sxx = np.einsum("ij,jk->ik", wc, x * x) - s0[:, None] * mx**2
        sxy = np.einsum("ij,jk->ik", wyc, x) - s0[:, None] * mx * my[:, None]
        rss = np.where(sxx > 1e-12, syy[:, None] - sxy**2 / sxx, syy[:, None])
    rss = np.where(np.isfinite(rss), rss, np.inf)
    i = np.argmin(rss, axis=1)

    def profile(wv):  # rss, a, b at one w per row
        xw = np.log(np.maximum(nr[None, :] + wv[:, None] * ns[None, :], N_FLOOR))
        with np.errstate(invalid="ignore", divide="ignore"):
            mxw = np.einsum("ij,ij->i", wc, xw) / s0
            vxx = np.einsum("ij,ij->i", wc, xw * xw) - s0 * mxw**2
            vxy = np.einsum("ij,ij->i", wyc, xw) - s0 * mxw * my
            ok = vxx > 1e-12
            b = np.where(ok, vxy / vxx, np.nan)
            r = np.where(ok, syy - vxy**2 / vxx, syy)
        return np.where(np.isfinite(r), r, np.inf), my + y0 - b * mxw, b

    lo = grid[np.maximum(i - 1, 0)]
    hi = grid[np.minimum(i + 1, grid.size - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, e = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fe = profile(c)[0], profile(e)[0]
    for _ in range(int(math.ceil(math.log(tol / (2 * step)) / math.log(g))) + 1):
        left = fc <= fe  # the minimum is in [lo, e]
        hi = np.where(left, e, hi)
        lo = np.where(left, lo, c)
        e_new = np.where(left, c, lo + g * (hi - lo))
        c_new = np.where(left, hi - g * (hi - lo), e)
        f_new = profile(np.where(left, c_new, e_new))[0]
        fc, fe = np.where(left, f_new, fe), np.where(left, fc, f_new)
        c, e = c_new, e_new
    w_hat = (lo + hi) / 2
    r_hat, a, b = profile(w_hat)
    clipped = np.zeros(d.n, dtype=bool)
    clipped[mask] = (nr + w_hat[0] * ns < N_FLOOR)[inv]
    return {"a": a, "b": b, "w": w_hat, "rss": r_hat, "at_bound": (i == 0) | (i == grid.size - 1),
            "clipped": clipped, "mask": mask}


def share_grid_mask(runs: Runs) -> np.ndarray:
    """The runs on the fixed-total grid: kind pct, plus the real-only runs with as many real
    images per class as the pct mixes' total (the 0 % control, pct0)."""
    d = design(runs)
    pct = d.kind == "pct"
    if not pct.any():
        return pct
    totals = np.unique(d.n_real[pct] + d.n_syn[pct])
    return pct | (d.mask(("real",)) & np.isin(d.n_real, totals))


def fit_share_curve(runs: Runs, weights: Optional[np.ndarray] = None, degree: int = 2) -> np.ndarray:
    """Least squares polynomial of accuracy in the synthetic share on the fixed-total grid.

    Returns coefficients (rows: weight rows; columns: constant, share, share^2, ...); NaN rows
    where the draw leaves the fit singular.
    """
    d = design(runs)
    wt = _weights(d, weights)
    mask = share_grid_mask(d)
    s, y, wm = d.share[mask], d.acc[mask], wt[:, mask]
    p = degree + 1
    mom = np.stack([_wsum(wm, s**k) for k in range(2 * p - 1)], axis=1)  # rows x 2p-1
    xtx = mom[:, np.add.outer(np.arange(p), np.arange(p))]
    xty = np.stack([_wsum(wm, s**k * y) for k in range(p)], axis=1)
    out = np.full((wt.shape[0], p), np.nan)
    ok = np.abs(np.linalg.det(xtx)) > 1e-12 * np.maximum(mom[:, 0], 1) ** p
    if ok.any():
        out[ok] = np.linalg.solve(xtx[ok], xty[ok][..., None])[..., 0]
    return out


def eval_poly(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Polynomial(s) with coefficient rows ``coef`` (constant first) at ``x``: rows x len(x)."""
    coef = np.atleast_2d(coef)
    return np.stack([coef[:, k][:, None] * np.asarray(x)[None, :] ** k for k in range(coef.shape[1])]).sum(0)


def best_share_of(coef: np.ndarray) -> np.ndarray:
    """Argmax over [0, 1] of each quadratic (exact: the vertex when it is a maximum inside
    [0, 1], else the better end)."""
    coef = np.atleast_2d(coef)
    c1, c2 = coef[:, 1], coef[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex = np.clip(np.where(c2 < 0, -c1 / (2 * c2), 0.0), 0.0, 1.0)
    ends = np.where(c1 + c2 > 0, 1.0, 0.0)  # f(1) - f(0) = c1 + c2
    cand = np.stack([vertex, ends], axis=1)
    val = eval_poly_pointwise(coef, cand)
    best = cand[np.arange(coef.shape[0]), np.argmax(val, axis=1)]
    return np.where(np.isfinite(coef).all(1), best, np.nan)


def eval_poly_pointwise(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row i of ``coef`` at the points in row i of ``x``."""
    return sum(coef[:, k][:, None] * x**k for k in range(coef.shape[1]))


def break_even_of(coef: np.ndarray) -> np.ndarray:
    """The end of the first stretch [0, s] on which each quadratic stays at or above its value at
    share 0: f(s) - f(0) = s (c1 + c2 s). 0 when it falls from the start, 1 when it never falls
    below f(0) on [0, 1]."""
    coef = np.atleast_2d(coef)
    c1, c2 = coef[:, 1], coef[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.where(c2 < 0, -c1 / c2, np.inf)  # c1 + c2 s = 0
    out = np.where(c1 < 0, 0.0, np.where(c2 >= 0, 1.0, np.clip(root, 0.0, 1.0)))
    out = np.where((c1 == 0) & (c2 < 0), 0.0, out)
    return np.where(np.isfinite(coef).all(1), out, np.nan)


# --------------------------------------------------------------------------- multiple testing


def holm(pvalues: Iterable[Optional[float]]) -> np.ndarray:
    """Holm's step-down adjustment: sorted ascending, ``p_(i) * (m - i + 1)``, made monotone by a
    running maximum and capped at 1, in the input order. None / NaN entries are not counted in m
    and come back as NaN."""
    p = np.array([np.nan if v is None else float(v) for v in pvalues], dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adj
    return out


# --------------------------------------------------------------------------- comparing two conditions


def difference_table(runs: Runs, condition: str, other: str) -> dict:
    """The paired differences ``condition - other`` as a replicates x seeds table.

    A real-only condition (no replicates) enters every replicate row with its seed's accuracy;
    when both have replicates, rows are their common replicates. Columns are the seeds present in
    every row of both. Returns ``table`` (rows x seeds; one row without replicates), ``note``.
    If the replicates are not crossed with the seeds (fewer than 2 complete columns), the table
    is one row of replicate-averaged differences per seed and ``note`` says so.
    """
    d = design(runs)

    def cells(c):
        m = d.condition == c
        if not m.any():
            raise ValueError(f"no runs of condition {c!r}")
        return {(int(r), int(s)): float(y) for r, s, y in zip(d.rep_idx[m], d.seed_idx[m], d.acc[m])}

    ta, tb = cells(condition), cells(other)
    ra, rb = sorted({r for r, _ in ta}), sorted({r for r, _ in tb})
    if ra == [-1] and rb == [-1]:
        rows = [(-1, -1)]
    elif rb == [-1]:
        rows = [(r, -1) for r in ra]
    elif ra == [-1]:
        rows = [(-1, r) for r in rb]
    else:
        rows = [(r, r) for r in ra if r in rb]
    seeds = [s for s in range(len(d.seeds)) if rows and all((x, s) in ta and (y, s) in tb for x, y in rows)]
    note = None
    if len(seeds) < 2 and rows:
        # replicates not crossed with seeds: average what each seed has
        seeds, vals = [], []
        for s in range(len(d.seeds)):
            xa = [v for (r, t), v in ta.items() if t == s]
            xb = [v for (r, t), v in tb.items() if t == s]
            if xa and xb:
                seeds.append(s)
                vals.append(np.mean(xa) - np.mean(xb))
        table = np.array([vals], dtype=float).reshape(1, -1)
        note = "replicates not crossed with seeds: replicate-averaged differences per seed"
        return {"table": table, "seeds": seeds, "note": note}
    table = np.array([[ta[(x, s)] - tb[(y, s)] for s in seeds] for x, y in rows], dtype=float).reshape(len(rows), len(seeds))
    return {"table": table, "seeds": seeds, "note": note}


def _t_result(diff: float, var: float, df: float, confidence: float, alternative: str, scale: float) -> dict:
    """t interval and p from a mean difference, its variance and df; ``scale``: the size of the
    differences, below whose 1e-9 a standard error counts as zero (floating-point noise)."""
    if not (math.isfinite(var) and var > (1e-9 * scale) ** 2 and df > 0):
        return {"diff": diff, "ci": None, "p": None, "df": None, "note": "no variance: every difference is the same"}
    se = math.sqrt(var)
    t = diff / se
    q = stats.t.ppf((1 + confidence) / 2, df)
    if alternative == "greater":
        p = float(stats.t.sf(t, df))
    else:
        p = float(2 * stats.t.sf(abs(t), df))
    return {"diff": diff, "ci": [diff - q * se, diff + q * se], "p": p, "df": df, "note": None}


def two_way_variance(table: np.ndarray) -> tuple[float, float]:
    """Variance of the grand mean of a replicates x seeds table under crossed random effects, and
    its Satterthwaite degrees of freedom.

    Var = s2_rep / R + s2_seed / S + s2_res / (R S), each component from the ANOVA mean squares
    (MS_rep = S s2_rep + s2_res, MS_seed = R s2_seed + s2_res, MS_res = s2_res), negative ones
    set to zero. One row: the paired-t variance, S - 1 degrees of freedom.
    """
    t = np.asarray(table, dtype=float)
    r, s = t.shape
    if r == 1:
        return float(t[0].var(ddof=1) / s), float(s - 1)
    if s == 1:
        return float(t[:, 0].var(ddof=1) / r), float(r - 1)
    g = t.mean()
    rm, sm = t.mean(1), t.mean(0)
    ms_r = s * ((rm - g) ** 2).sum() / (r - 1)
    ms_s = r * ((sm - g) ** 2).sum() / (s - 1)
    ms_e = ((t - rm[:, None] - sm[None, :] + g) ** 2).sum() / ((r - 1) * (s - 1))
    use_r, use_s = ms_r > ms_e, ms_s > ms_e
    terms = []  # (coefficient x mean square, its df), summing to Var * R * S
    terms += [(ms_r, r - 1)] if use_r else []
    terms += [(ms_s, s - 1)] if use_s else []
    if use_r and use_s:
        terms.append((-ms_e, (r - 1) * (s - 1)))
    elif not (use_r or use_s):
        terms.append((ms_e, (r - 1) * (s - 1)))
    v = sum(c for c, _ in terms)
    den = sum(c * c / f for c, f in terms)
    df = v * v / den if den > 0 else float("nan")
    return float(v / (r * s)), float(df)


def variance_components(runs: Runs) -> dict:
    """Replicate, seed and run-noise standard deviations of accuracy, pooled over the synthetic
    conditions (a two-way ANOVA of each condition's complete replicates x seeds table, sums of
    squares and degrees of freedom added up; negative components set to 0).

    ``ratio`` = sd_replicate / sd_residual is what decides how far the hierarchical bootstrap can
    be trusted with few replicates (benchmarks/answer_coverage.py). The pooled degrees of freedom
    overstate the information on sd_replicate: all conditions share the replicates.
    """
    d = design(runs)
    ss = np.zeros(3)
    df = np.zeros(3)
    coef = np.zeros(2)  # sum of df_rep * S and df_seed * R: E[SS_rep] = df_rep (S s2_rep + s2_res)
    n = 0
    for c in d.conditions:
        if d.cond_kind(c) not in SYNTHETIC_KINDS:
            continue
        m = d.condition == c
        cells = {(r, t): y for r, t, y in zip(d.rep_idx[m], d.seed_idx[m], d.acc[m])}
        reps = sorted({r for r, _ in cells})
        seeds = [t for t in range(len(d.seeds)) if all((r, t) in cells for r in reps)]
        if len(reps) < 2 or len(seeds) < 2:
            continue
        tab = np.array([[cells[(r, t)] for t in seeds] for r in reps])
        r, k = tab.shape
        g, rm, sm = tab.mean(), tab.mean(1), tab.mean(0)
        ss += [k * ((rm - g) ** 2).sum(), r * ((sm - g) ** 2).sum(), ((tab - rm[:, None] - sm[None, :] + g) ** 2).sum()]
        df += [r - 1, k - 1, (r - 1) * (k - 1)]
        coef += [(r - 1) * k, (k - 1) * r]
        n += 1
    if n == 0:
        return {"sd_replicate": None, "sd_seed": None, "sd_residual": None, "ratio": None, "n_conditions": 0}
    ms_e = ss[2] / df[2]
    s2_rep = max(0.0, (ss[0] - ms_e * df[0]) / coef[0])
    s2_seed = max(0.0, (ss[1] - ms_e * df[1]) / coef[1])
    ratio = math.sqrt(s2_rep / ms_e) if ms_e > 0 else None
    return {"sd_replicate": math.sqrt(s2_rep), "sd_seed": math.sqrt(s2_seed), "sd_residual": math.sqrt(ms_e),
            "ratio": ratio, "n_conditions": n, "df": [int(x) for x in df]}


def compare_table(table: np.ndarray, method: str, confidence: float = 0.95, alternative: str = "two-sided") -> dict:
    """Test and interval for the mean of a difference table (:func:`difference_table`) with one of
    the t-based methods: ``two_way``, ``paired_t`` (mean over rows per seed, t over seeds) or
    ``replicate_t`` (mean over seeds per row, t over rows; ``paired_t`` with one row).
    ``alternative``: ``two-sided`` or ``greater`` (the mean difference is above 0)."""
    t = np.asarray(table, dtype=float)
    diff = float(t.mean()) if t.size else float("nan")
    note = None
    if method == "replicate_t" and t.shape[0] < 2:
        method, note = "paired_t", "one replicate row: paired t over seeds"
    if method == "two_way" and t.shape[0] >= 2 and t.shape[1] < 2:
        method = "replicate_t"
    if method == "paired_t":
        v = t.mean(0)
        var, df = (v.var(ddof=1) / v.size, v.size - 1) if v.size >= 2 else (float("nan"), 0)
    elif method == "replicate_t":
        v = t.mean(1)
        var, df = v.var(ddof=1) / v.size, v.size - 1
    elif method == "two_way":
        var, df = two_way_variance(t) if t.size >= 2 else (float("nan"), 0)
    else:
        raise ValueError(f"unknown test {method!r}: one of {', '.join(TESTS)}")
    out = _t_result(diff, var, df, confidence, alternative, float(np.abs(t).max()) if t.size else 0.0)
    out["test"] = method
    out["note"] = out["note"] or note
    return out


def bootstrap_p(draws: np.ndarray, alternative: str = "two-sided") -> np.ndarray:
    """Bootstrap p of "no difference" from draws of a difference (axis 0: draws): two-sided, twice
    the smaller share of draws on either side of 0; ``greater``, the share of draws <= 0. Floored
    at 1 / n_draws, capped at 1; NaN draws ignored."""
    draws = np.asarray(draws, dtype=float)
    n = np.sum(np.isfinite(draws), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        le = np.sum(draws <= 0, axis=0) / n
        ge = np.sum(draws >= 0, axis=0) / n
        p = le if alternative == "greater" else np.minimum(1.0, 2 * np.minimum(le, ge))
        return np.where(n > 0, np.maximum(p, 1.0 / np.maximum(n, 1)), np.nan)


# --------------------------------------------------------------------------- simulation (tests, coverage studies)


def simulate_runs(
    rng: Union[int, np.random.Generator],
    *,
    per_class: int = 225,
    shares: Sequence[int] = tuple(range(0, 101, 10)),
    real_controls: bool = True,
    retrieval: Sequence[int] = (25, 50, 100, 200),
    aug: Sequence[int] = (25, 50, 100, 200),
    n_seeds: int = 5,
    n_replicates: int = 2,
    a: float = 0.35,
    b: float = 0.08,
    w: float = 0.5,
    share_effect: Optional[tuple[float, float]] = None,
    effects: Optional[Mapping[str, float]] = None,
    sd_seed: float = 0.003,
    sd_run: float = 0.005,
    sd_replicate: float = 0.0,
    replicate_shared: float = 0.5,
) -> list[dict]:
    """Runs of the default design drawn from a known truth.

    Mean accuracy: ``a + b ln(max(n_real + w n_synthetic, N_FLOOR))``; with ``share_effect =
    (c1, c2)`` the pct mixes instead follow ``f(per_class) + c1 s + c2 s^2`` (a known quadratic in
    the share s = n_synthetic / per_class); ``effects`` adds to named conditions' means. Noise: a
    seed effect shared by every condition (``sd_seed``), a replicate effect per synthetic
    condition and replicate (``sd_replicate``; the share ``replicate_shared`` of its variance is
    common to all conditions built from that replicate) and independent run noise (``sd_run``).
    Conditions: pctN for N in ``shares`` (pct0 is kind real), realK controls at each mix's real
    budget, retrK, augK; ``n_seeds`` seeds, each synthetic condition crossed with ``n_replicates``.
    """
    rng = np.random.default_rng(rng)
    pc = lambda n, p: (n * p + 50) // 100  # noqa: E731 (round half up, as synthmix.mixes.percent_of)
    conds = []  # (name, kind, n_real, n_syn)
    for p in shares:
        ns = pc(per_class, p)
        conds.append((f"pct{p}", "real" if p == 0 else "pct", per_class - ns, ns))
    if real_controls:
        for p in shares:
            if 0 < p < 100:
                conds.append((f"real{100 - p}", "real", per_class - pc(per_class, p), 0))
    conds += [(f"retr{k}", "retrieval", per_class + pc(per_class, k), 0) for k in retrieval]
    conds += [(f"aug{k}", "aug", per_class, pc(per_class, k)) for k in aug]
    seed_eff = rng.normal(0, sd_seed, n_seeds)
    rep_common = rng.normal(0, 1, n_replicates)
    effects = dict(effects or {})
    runs = []
    for name, kind, nr, ns in conds:
        mean = a + b * math.log(max(nr + w * ns, N_FLOOR))
        if share_effect is not None and kind == "pct":
            s = ns / per_class
            mean = a + b * math.log(per_class) + share_effect[0] * s + share_effect[1] * s * s
        mean += effects.get(name, 0.0)
        if ns:
            own = rng.normal(0, 1, n_replicates)
            rep_eff = sd_replicate * (math.sqrt(replicate_shared) * rep_common + math.sqrt(1 - replicate_shared) * own)
            reps = range(n_replicates)
        else:
            rep_eff, reps = np.zeros(1), [None]
        noise = rng.normal(0, sd_run, (len(reps), n_seeds))
        for i, rep in enumerate(reps):
            for s in range(n_seeds):
                acc = min(1.0, max(0.0, mean + seed_eff[s] + rep_eff[i] + noise[i, s]))
                runs.append({
                    "condition": name, "kind": kind, "n_real": nr, "n_synthetic": ns,
                    "share": ns / (nr + ns), "replicate": rep, "seed": s, "accuracy": acc,
                })
    return runs


# --------------------------------------------------------------------------- THE ANSWER


def _clean(x: Any, digits: int = 6) -> Any:
    """JSON-ready: numpy scalars and arrays to Python, floats to ``digits`` significant digits,
    NaN / inf to None."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_clean(v, digits) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return float(f"{x:.{digits}g}") if math.isfinite(x) else None
    return x


def _interval(draws: np.ndarray, confidence: float, max_invalid: Optional[float] = None) -> Optional[list]:
    """Percentile interval of 1-d draws, None when too many draws are NaN (more than the tail
    mass (1 - confidence) / 2 by default)."""
    draws = np.asarray(draws, dtype=float)
    bad = np.mean(~np.isfinite(draws)) if draws.size else 1.0
    if bad > ((1 - confidence) / 2 if max_invalid is None else max_invalid):
        return None
    lo, hi = percentile_interval(draws[np.isfinite(draws)], confidence)
    return [float(lo), float(hi)]


def answer(
    runs: Runs,
    *,
    baseline: str = "pct0",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    test: str = DEFAULT_TEST,
    interval: str = "bootstrap",
    rate_bounds: tuple[float, float] = RATE_BOUNDS,
) -> dict:
    """THE ANSWER from a table of runs (see the module docstring); a JSON-serialisable dict.

    Keys: ``best_share``, ``best_share_ci``, ``best_share_observed``, ``tied_with_best``,
    ``break_even_share``, ``break_even_share_ci``, ``share_curve`` (coefficients), ``exchange_rate``,
    ``exchange_rate_ci``, ``exchange_rate_fit``, ``exchange_rate_by_kind``,
    ``exchange_rate_by_condition``, ``real_curve``, ``synthetic_gain``, ``controls``, ``tests``,
    ``curves``, ``n_runs``, ``n_classifier_seeds``, ``n_synthetic_replicates``, ``baseline``,
    ``confidence``, ``n_boot``, ``test``, ``notes``, ``method``.
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}: one of {', '.join(TESTS)}")
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}: one of {', '.join(INTERVALS)}")
    d = design(runs)
    if baseline not in d.conditions:
        raise ValueError(f"baseline {baseline!r} has no runs")
    notes: list[str] = []
    # row 0: the estimate; rows 1..n_boot: the bootstrap draws; then the jackknife's delete-one rows
    w_all = np.vstack([np.ones((1, d.n)), bootstrap_weights(d, n_boot, seed), jackknife_weights(d)])
    boot = slice(1, 1 + n_boot)
    n_s, n_r = len(d.seeds), len(d.replicates)

    def ci(x: np.ndarray, bounds: Optional[tuple] = None) -> Optional[list]:
        """The interval of the estimate x[0] (x: every row)."""
        if interval == "bootstrap":
            out = _interval(x[boot], confidence)
        else:
            lo, hi = jackknife_t_interval(x[0], x[1 + n_boot:], n_s, n_r, confidence)
            out = [float(lo), float(hi)] if np.isfinite([lo, hi]).all() else None
        if out is not None and bounds is not None:
            out = [float(np.clip(v, *bounds)) for v in out]
        return out

    def band(y: np.ndarray) -> np.ndarray:
        """Pointwise intervals of a curve (y: every row x grid): [lower, upper]."""
        if interval == "bootstrap":
            return percentile_interval(y[boot], confidence)
        return jackknife_t_interval(y[0], y[1 + n_boot:], n_s, n_r, confidence)

    means = condition_means(d, w_all)
    ci_of = {c: ci(means[:, j]) for j, c in enumerate(d.conditions)}
    n_runs = {c: int(np.sum(d.condition == c)) for c in d.conditions}
    values = {c: [float(v) for v in d.acc[d.condition == c]] for c in d.conditions}

    def mean_entry(c: str) -> dict:
        j = d.conditions.index(c)
        few = n_runs[c] < MIN_RUNS_FOR_INTERVAL
        out = {"mean": float(means[0, j]), "ci": None if few else ci_of[c], "n_runs": n_runs[c]}
        if few:
            out["values"] = values[c]
        return out

    # ---- 1. the real-only curve
    curve = fit_real_curve(d, w_all)
    a, b = curve["a"], curve["b"]
    n_obs = d.n_real[curve["mask"]]
    valid = bool(np.isfinite(b[0]) and b[0] > 0)
    real_curve = {
        "a": float(a[0]), "b": float(b[0]),
        "a_ci": ci(a), "b_ci": ci(b),
        "n_runs": int(curve["mask"].sum()),
        "n_range": [float(n_obs.min()), float(n_obs.max())] if n_obs.size else None,
        "invertible": valid,
        "reason": None if valid else (
            "fewer than two distinct real-image counts among the real-only runs" if not np.isfinite(b[0])
            else f"slope b = {b[0]:.4g} <= 0: accuracy does not rise with real images, so the curve cannot be inverted"),
        "share_of_draws_with_b_le_0": float(np.mean(~(b[boot] > 0))),
    }
    if not valid:
        notes.append(f"real-only curve: {real_curve['reason']}; exchange rates are None")

    # ---- 2. exchange rates
    rates = exchange_rates(d, w_all)
    by_condition = {}
    for j, c in enumerate(rates["conditions"]):
        r, ne = rates["rate"][:, j], rates["n_eff"][:, j]
        few = n_runs[c] < MIN_RUNS_FOR_INTERVAL
        ok = valid and np.isfinite(r[0])
        lo, hi = real_curve["n_range"] or (np.nan, np.nan)
        by_condition[c] = {
            "kind": d.cond_kind(c), "n_real": int(d.cond_first(c, "n_real")), "n_synthetic": int(d.cond_first(c, "n_syn")),
            "rate": float(r[0]) if ok else None,
            "ci": None if (few or not ok) else ci(r),
            "n_eff": float(ne[0]) if ok else None,
            "n_eff_ci": None if (few or not ok) else ci(ne),
            "clipped": bool(rates["clipped"][0, j]) if ok else None,
            "extrapolated": bool(ok and not (lo <= ne[0] <= hi)),
        }
        if few:
            by_condition[c]["values"] = values[c]
        if ok and rates["clipped"][0, j]:
            notes.append(f"{c}: its accuracy is below f({N_FLOOR:g}); n_eff clipped at {N_FLOOR:g} image per class")

    def pooled(kinds: Sequence[str]) -> dict:
        if not d.mask(kinds).any():
            return {"rate": None, "ci": None, "reason": f"no runs of kind {'/'.join(kinds)}"}
        fit = fits[tuple(kinds)] = fit_exchange_rate(d, w_all, kinds=kinds, bounds=rate_bounds)
        ok = valid and bool(fit["b"][0] > 0)
        wv = np.where(fit["b"] > 0, fit["w"], np.nan)
        clipped = sorted({str(c) for c in d.condition[fit["clipped"]]})
        out = {
            "rate": float(fit["w"][0]) if ok else None,
            "ci": ci(wv) if ok else None,
            "a": float(fit["a"][0]), "b": float(fit["b"][0]),
            "at_bound": bool(fit["at_bound"][0]), "bounds": list(rate_bounds),
            "share_of_draws_at_bound": float(np.mean(fit["at_bound"][boot])),
            "clipped_conditions": clipped,
            "n_runs": int(fit["mask"].sum()),
            "reason": None if ok else ("real-only curve not invertible" if not valid else "joint fit has slope b <= 0"),
        }
        if ok and fit["at_bound"][0]:
            notes.append(f"exchange rate ({'/'.join(kinds)}) at the end of the searched range {rate_bounds}")
        if ok and clipped:
            notes.append(f"exchange rate ({'/'.join(kinds)}): n_real + w n_synthetic clipped at {N_FLOOR:g} for {', '.join(clipped)}")
        return out

    syn_kinds = [k for k in SYNTHETIC_KINDS if d.mask((k,)).any()]
    fits: dict[tuple, dict] = {}
    pooled_fit = pooled(SYNTHETIC_KINDS)
    by_kind = {k: pooled((k,)) for k in syn_kinds}

    # ---- 3. best share
    grid_mask = share_grid_mask(d)
    share_conds = [c for c in d.conditions if grid_mask[d.condition == c].any()]
    share_of = {c: float(d.cond_first(c, "share")) for c in share_conds}
    share_conds.sort(key=lambda c: share_of[c])
    best = {"best_share": None, "best_share_ci": None, "best_share_observed": None, "tied_with_best": [],
            "break_even_share": None, "break_even_share_ci": None, "share_curve": None}
    share_curve_plot = None
    if len({share_of[c] for c in share_conds}) >= 3:
        coef = fit_share_curve(d, w_all)
        bs, be = best_share_of(coef), break_even_of(coef)
        cols = [d.conditions.index(c) for c in share_conds]
        obs_best = share_conds[int(np.nanargmax(means[0, cols]))]
        ties = _ties(d, obs_best, share_conds, means[: 1 + n_boot], cols, test, confidence)
        best.update({
            "best_share": float(bs[0]), "best_share_ci": ci(bs, (0.0, 1.0)),
            "best_share_observed": share_of[obs_best], "best_share_observed_condition": obs_best,
            "tied_with_best": [share_of[c] for c in share_conds if ties[c]["tied"]],
            "tied_with_best_detail": ties,
            "break_even_share": float(be[0]), "break_even_share_ci": ci(be, (0.0, 1.0)),
            "share_curve": {"coef": [float(v) for v in coef[0]], "coef_ci": [ci(coef[:, k]) for k in range(coef.shape[1])],
                            "conditions": share_conds},
        })
        fitted = eval_poly(coef, SHARE_GRID)
        lower, upper = band(fitted)
        share_curve_plot = {
            "grid": SHARE_GRID, "fit": fitted[0], "lower": lower, "upper": upper,
            "points": [{"condition": c, "share": share_of[c], **mean_entry(c)} for c in share_conds],
        }
    else:
        notes.append("fewer than three shares on the fixed-total grid: no share curve")

    # ---- 4. synthetic gain and controls
    real_conds = [c for c in d.conditions if d.cond_kind(c) in REAL_KINDS]
    controls, gains = {}, {}
    for c in d.conditions:
        if d.cond_kind(c) not in SYNTHETIC_KINDS:
            continue
        nr = d.cond_first(c, "n_real")
        match = [x for x in real_conds if d.cond_first(x, "n_real") == nr]
        controls[c] = (baseline if baseline in match else (sorted(match)[0] if match else None))
        j = d.conditions.index(c)
        few = n_runs[c] < MIN_RUNS_FOR_INTERVAL
        entry = {"kind": d.cond_kind(c), "n_real": int(nr), "control": controls[c]}
        if nr > 0:
            g = means[:, j] - (a + b * math.log(nr))
            entry.update({"gain": float(g[0]), "ci": None if few else ci(g)})
        else:
            entry.update({"gain": None, "ci": None, "reason": "no real images: f(0) is not defined"})
        if controls[c] is not None:
            k = d.conditions.index(controls[c])
            cd = means[:, j] - means[:, k]
            entry.update({"control_diff": float(cd[0]), "control_diff_ci": None if few else ci(cd)})
        if few:
            entry["values"] = values[c]
        gains[c] = entry

    # ---- 6. tests against the baseline
    tests = {}
    bj = d.conditions.index(baseline)
    for c in d.conditions:
        if c == baseline:
            continue
        j = d.conditions.index(c)
        entry = _compare(d, c, baseline, means[: 1 + n_boot, j] - means[: 1 + n_boot, bj], test, confidence)
        entry.update({"kind": d.cond_kind(c), "n_runs": n_runs[c]})
        if n_runs[c] < MIN_RUNS_FOR_INTERVAL:
            entry.update({"ci": None, "p": None, "values": values[c], "note": f"{n_runs[c]} run(s): raw values, no interval"})
        tests[c] = entry
    adj = holm([t["p"] for t in tests.values()])
    for t, pa in zip(tests.values(), adj):
        t["p_holm"] = pa

    # ---- how far the bootstrap can be trusted
    components = variance_components(d)
    # the percentile bootstrap covers < ~0.93 from about ratio 0.5 at R = 2, 1 at R = 3 to 5
    # (benchmarks/answer_coverage.py)
    if components["ratio"] is not None and interval == "bootstrap" and components["ratio"] >= 0.5 * math.sqrt(n_r / 2):
        notes.append(
            f"replicate SD is {components['ratio']:.2g} x the run-to-run SD with {n_r} synthetic replicates: "
            "the bootstrap intervals (exchange rates, best share, gains, curves) are likely too narrow "
            "(benchmarks/answer_coverage.py); interval='jackknife_t' or more replicates fix that")

    # ---- 5. curves
    curves: dict[str, Any] = {"share": share_curve_plot, "real": None, "added": {}}
    if n_obs.size:
        ng = np.exp(np.linspace(np.log(n_obs.min()), np.log(n_obs.max()), 60))
        fr = a[:, None] + b[:, None] * np.log(ng)[None, :]
        lower, upper = band(fr)
        curves["real"] = {"n": ng, "fit": fr[0], "lower": lower, "upper": upper,
                          "points": [{"condition": c, "n_real": int(d.cond_first(c, "n_real")), **mean_entry(c)} for c in real_conds]}
    base_n = d.cond_first(baseline, "n_real")
    for kind, fit_kind in (("aug", "aug"), ("retrieval", None)):
        conds = [c for c in d.conditions if d.cond_kind(c) == kind]
        if not conds:
            continue
        added = {c: float(d.cond_first(c, "n_syn") if kind == "aug" else d.cond_first(c, "n_real") - base_n) for c in conds}
        conds.sort(key=added.get)
        xg = np.linspace(0, max(added.values()), 60)
        entry = {"added": xg, "points": [{"condition": baseline, "added": 0.0, **mean_entry(baseline)}]
                 + [{"condition": c, "added": added[c], **mean_entry(c)} for c in conds]}
        if kind == "aug":
            fit = fits[("aug",)]
            yy = fit["a"][:, None] + fit["b"][:, None] * np.log(np.maximum(base_n + fit["w"][:, None] * xg[None, :], N_FLOOR))
        else:
            yy = a[:, None] + b[:, None] * np.log(base_n + xg)[None, :]
        lower, upper = band(yy)
        entry.update({"fit": yy[0], "lower": lower, "upper": upper,
                      "x": "synthetic images added per class" if kind == "aug" else "real images added per class"})
        curves["added"][kind] = entry

    test_text = {
        "two_way": "two-way crossed random-effects (replicates x seeds) t-test on the paired differences, Satterthwaite df",
        "bootstrap": "hierarchical bootstrap percentile interval and p (2 x smaller tail around 0)",
        "paired_t": "paired t-test over seeds on replicate-averaged accuracy",
        "replicate_t": "t-test over per-replicate mean differences (R - 1 df)",
    }[test]
    interval_text = (
        f"{n_boot}-draw hierarchical bootstrap (seeds and synthetic replicates resampled, each once for all "
        f"conditions), {confidence:.0%} percentile" if interval == "bootstrap" else
        f"two-way delete-one jackknife (seeds, synthetic replicates) t intervals, Satterthwaite df, {confidence:.0%}")
    method = (
        f"real-only curve acc = a + b ln(n_real), least squares on real/retrieval runs; exchange rate w: least squares "
        f"acc = a + b ln(n_real + w n_synthetic) on all runs (per condition: inverse of the real-only curve); "
        f"best share: quadratic least squares in the share on pct runs and the 0 % control; intervals: "
        f"{interval_text}; tests against {baseline} and ties with the best share: {test_text}, Holm-adjusted"
    )
    out = {
        **{k: best[k] for k in ("best_share", "best_share_ci", "best_share_observed")},
        "tied_with_best": best["tied_with_best"],
        "break_even_share": best["break_even_share"], "break_even_share_ci": best["break_even_share_ci"],
        "exchange_rate": pooled_fit["rate"], "exchange_rate_ci": pooled_fit["ci"], "exchange_rate_fit": pooled_fit,
        "exchange_rate_by_kind": by_kind, "exchange_rate_by_condition": by_condition,
        "real_curve": real_curve, "synthetic_gain": gains, "controls": controls, "tests": tests, "curves": curves,
        "share_curve": best["share_curve"], "best_share_observed_condition": best.get("best_share_observed_condition"),
        "tied_with_best_detail": best.get("tied_with_best_detail"),
        "variance_components": components,
        "n_runs": d.n, "n_classifier_seeds": len(d.seeds), "n_synthetic_replicates": len(d.replicates),
        "baseline": baseline, "confidence": confidence, "n_boot": n_boot, "test": test, "interval": interval, "notes": notes, "method": method,
    }
    return _clean(out)


def _compare(d: Design, c: str, other: str, boot_diff: np.ndarray, test: str, confidence: float,
             alternative: str = "two-sided") -> dict:
    """``c - other`` with the chosen test; ``boot_diff``: row 0 the estimate, then the draws."""
    if test == "bootstrap":
        draws = boot_diff[1:]
        return {"diff": float(boot_diff[0]), "ci": _interval(draws, confidence),
                "p": float(bootstrap_p(draws, alternative)), "df": None, "test": "bootstrap", "note": None}
    tab = difference_table(d, c, other)
    out = compare_table(tab["table"], test, confidence, alternative)
    out["note"] = "; ".join(x for x in (tab["note"], out["note"]) if x) or None
    return out


def _ties(d: Design, best: str, conds: list, means: np.ndarray, cols: list, test: str, confidence: float) -> dict:
    """Per grid condition: one-sided p of "best minus this one <= 0", Holm-adjusted; tied when not
    significant at 1 - confidence."""
    jb = d.conditions.index(best)
    out = {}
    for c, j in zip(conds, cols):
        if c == best:
            continue
        r = _compare(d, best, c, means[:, jb] - means[:, j], test, confidence, alternative="greater")
        out[c] = {"diff": r["diff"], "p": r["p"]}
    adj = holm([v["p"] for v in out.values()])
    for v, pa in zip(out.values(), adj):
        v["p_holm"] = pa
        v["tied"] = bool(not (pa < 1 - confidence)) if math.isfinite(pa) else True
    out[best] = {"diff": 0.0, "p": None, "p_holm": None, "tied": True}
    return out
