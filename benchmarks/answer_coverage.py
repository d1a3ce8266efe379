#!/usr/bin/env python
"""Coverage of THE ANSWER's intervals and tests (src/synthmix/answer.py), by simulation.

Every simulated study is the default design of :func:`synthmix.answer.simulate_runs`: N = 225
images per class, 5 classifier seeds, R synthetic replicates crossed with the seeds, accuracy =
a + b ln(n_real + w n_synthetic) (a = 0.35, b = 0.08, w = 0.5) + a seed effect shared by every
condition (SD 0.003) + a replicate effect per synthetic condition (SD ``ratio`` x 0.005, half of
its variance shared by all conditions built from the replicate) + run noise (SD 0.005). The
settings cross R = 2, 3, 5 with ratio = replicate SD / run-noise SD = 0, 0.5, 1, 2.

Part A, tests of one mix against pct0 (the design's pct0 and pct50 runs; the true difference is
set by an effect): for each test of ``answer(test=...)``, the share of studies whose 95 %
interval covers the true difference when it is 0 (1 - type I error), the share with p < 0.05
when it is 0.01 (power; two run-noise SDs) and the median half-width of the interval.

Part B, the estimates' 95 % intervals, percentile bootstrap (``interval="bootstrap"``) and
two-way jackknife t (``interval="jackknife_t"``): the pooled exchange rate w, aug100's exchange
rate and pct40's synthetic gain (truth b ln(180 / 135)) in the log world; the best share
(truth 0.2) in a world where the pct mixes follow f(225) + 0.06 s - 0.15 s^2 (the break-even
share, 0.4, is monotone in the same ratio of coefficients, so its percentile intervals cover
exactly when the best share's do).

With 1000 studies a coverage has a Monte-Carlo standard error of about 0.007.

    python benchmarks/answer_coverage.py [--studies 1000] [--boot 1000] [--seed 0]

Takes about 20 minutes on one core of a busy machine (one BLAS thread: the products are small).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: threads only slow these small products
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from synthmix.answer import (  # noqa: E402
    TESTS,
    best_share_of,
    bootstrap_p,
    bootstrap_weights,
    compare_table,
    condition_means,
    design,
    difference_table,
    exchange_rates,
    fit_exchange_rate,
    fit_real_curve,
    fit_share_curve,
    jackknife_t_interval,
    jackknife_weights,
    percentile_interval,
    simulate_runs,
)

A_, B_, W_ = 0.35, 0.08, 0.5
SD_RUN, SD_SEED = 0.005, 0.003
REPLICATES = (2, 3, 5)
RATIOS = (0.0, 0.5, 1.0, 2.0)
EFFECT = 0.01


def part_a(rng, n_rep: int, ratio: float, studies: int, n_boot: int) -> dict:
    natural = B_ * (math.log(112 + W_ * 113) - math.log(225))  # pct50 - pct0 under the log model
    out = {t: {"cover": [], "power": [], "half": []} for t in TESTS}
    for delta, key in ((0.0, "cover"), (EFFECT, "power")):
        for _ in range(studies):
            runs = simulate_runs(rng, shares=(0, 50), real_controls=False, retrieval=(), aug=(),
                                 n_replicates=n_rep, sd_run=SD_RUN, sd_seed=SD_SEED,
                                 sd_replicate=ratio * SD_RUN, effects={"pct50": delta - natural})
            d = design(runs)
            tab = difference_table(d, "pct50", "pct0")["table"]
            res = {t: compare_table(tab, t) for t in TESTS if t != "bootstrap"}
            m = condition_means(d, bootstrap_weights(d, n_boot, int(rng.integers(1 << 31))))
            diff = m[:, d.conditions.index("pct50")] - m[:, d.conditions.index("pct0")]
            res["bootstrap"] = {"ci": list(percentile_interval(diff)), "p": float(bootstrap_p(diff))}
            for t, r in res.items():
                lo, hi = r["ci"] if r["ci"] is not None else (np.nan, np.nan)
                if key == "cover":
                    out[t]["cover"].append(lo <= delta <= hi)
                    out[t]["half"].append((hi - lo) / 2)
                else:
                    out[t]["power"].append(r["p"] is not None and r["p"] < 0.05 and lo > 0)
    return {t: {k: float(np.nanmedian(v) if k == "half" else np.mean(v)) for k, v in o.items()} for t, o in out.items()}


def part_b(rng, n_rep: int, ratio: float, studies: int, n_boot: int) -> dict:
    hits: dict[str, dict[str, list]] = {}

    def record(name, x, truth, n_s, n_r, bounds=None):
        for method in ("bootstrap", "jackknife_t"):
            if method == "bootstrap":
                lo, hi = percentile_interval(x[1:1 + n_boot])
            else:
                lo, hi = jackknife_t_interval(x[0], x[1 + n_boot:], n_s, n_r)
                if bounds:
                    lo, hi = np.clip([lo, hi], *bounds)
            h = hits.setdefault(name, {}).setdefault(method, [])
            h.append((lo <= truth <= hi, hi - lo))

    for world in ("log", "quadratic"):
        for _ in range(studies):
            kw = {"share_effect": (0.06, -0.15)} if world == "quadratic" else {}
            d = design(simulate_runs(rng, n_replicates=n_rep, sd_run=SD_RUN, sd_seed=SD_SEED,
                                     sd_replicate=ratio * SD_RUN, **kw))
            w = np.vstack([np.ones((1, d.n)), bootstrap_weights(d, n_boot, int(rng.integers(1 << 31))),
                           jackknife_weights(d)])
            n_s, n_r = len(d.seeds), len(d.replicates)
            if world == "log":
                record("w", fit_exchange_rate(d, w)["w"], W_, n_s, n_r)
                rates = exchange_rates(d, w)
                record("rate aug100", rates["rate"][:, rates["conditions"].index("aug100")], W_, n_s, n_r)
                curve = fit_real_curve(d, w)
                gain = condition_means(d, w)[:, d.conditions.index("pct40")] - (curve["a"] + curve["b"] * math.log(135))
                record("gain pct40", gain, B_ * math.log(180 / 135), n_s, n_r)
            else:
                record("best share", best_share_of(fit_share_curve(d, w)), 0.2, n_s, n_r, (0.0, 1.0))
    return {name: {m: (float(np.mean([c for c, _ in v])), float(np.median([h for _, h in v]))) for m, v in by.items()}
            for name, by in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    print(f"# answer_coverage: {args.studies} studies per setting, {args.boot} bootstrap draws, 5 seeds, "
          f"run-noise SD {SD_RUN}, seed-effect SD {SD_SEED}, RNG seed {args.seed}\n")

    print("## A. one mix against pct0: coverage of the 95 % interval at difference 0 (= 1 - type I error), "
          f"power at difference {EFFECT} (p < 0.05), median interval half-width (percentage points)\n")
    print("| R | rep SD / run SD | " + " | ".join(f"{t} cover / power / half" for t in TESTS) + " |")
    print("|---|---|" + "---|" * len(TESTS))
    worst = {t: 0.0 for t in TESTS}
    for n_rep in REPLICATES:
        for ratio in RATIOS:
            rng = np.random.default_rng([args.seed, 1, n_rep, int(ratio * 10)])
            res = part_a(rng, n_rep, ratio, args.studies, args.boot)
            for t in TESTS:
                worst[t] = max(worst[t], abs(res[t]["cover"] - 0.95))
            cells = [f"{res[t]['cover']:.3f} / {res[t]['power']:.2f} / {100 * res[t]['half']:.2f}" for t in TESTS]
            print(f"| {n_rep} | {ratio:g} | " + " | ".join(cells) + " |", flush=True)
    print("\nlargest |coverage - 0.95| over the settings: " + ", ".join(f"{t} {v:.3f}" for t, v in worst.items()))

    print("\n## B. the estimates' 95 % intervals: coverage (median width), percentile bootstrap vs two-way jackknife t\n")
    names = ("w", "rate aug100", "gain pct40", "best share")
    print("| R | rep SD / run SD | " + " | ".join(f"{n}: bootstrap | {n}: jackknife t" for n in names) + " |")
    print("|---|---|" + "---|---|" * len(names))
    for n_rep in REPLICATES:
        for ratio in RATIOS:
            rng = np.random.default_rng([args.seed, 2, n_rep, int(ratio * 10)])
            res = part_b(rng, n_rep, ratio, args.studies, args.boot)
            cells = []
            for n in names:
                for m in ("bootstrap", "jackknife_t"):
                    c, h = res[n][m]
                    cells.append(f"{c:.3f} ({h:.3g})")
            print(f"| {n_rep} | {ratio:g} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
