"""The ratio study's summary: accuracy per mix over training seeds, and tests against a baseline.

Input is what the ``evaluate`` stage writes per (mix, seed): a metrics dict (``mix``, ``seed``,
``accuracy``, optionally ``per_class_accuracy`` and ``n_test``) and a predictions table
(``path,actual,predicted``, one row per real test image, the same rows in the same order
for every run).

Per mix, :func:`summarize` reports

- the **fake share** of the training set: ``pctN`` → N / 100 (N % synthetic at a fixed total
  per class; the per-class count is rounded half up, so 50 % of 225 is really 113 / 225 —
  the nominal share is reported); ``augN`` → N / (100 + N) (every real image plus N % as many
  synthetic ones, so aug100 is half synthetic but twice the size of pct0);
- the accuracy over seeds: mean, standard deviation (``ddof=1``), a Student-t confidence
  interval of the mean (both null with one seed), the per-seed values and the mean per-class
  accuracy; the **mean per-class accuracy** (balanced accuracy, DA-Fusion's metric, the
  evaluate stage's ``mean_per_class_accuracy``) over seeds, mean and standard deviation, when
  every run has it;
- against the baseline mix: the mean difference in percentage points over seed-matched pairs,
  a paired t-test across seeds (null with fewer than two pairs or when every pair differs
  by the same amount), and, per seed, McNemar's exact test on the per-image correctness of
  the two models on the same test images (both in :mod:`synthmix.stats`). With a handful of
  seeds the t-test has little power; McNemar uses every test image and is the sensitive test
  of "these two models differ on this test set" (it says nothing about seed-to-seed spread).

:func:`markdown_table`, :func:`plot` and :func:`plot_rows` / :func:`write_plot_data` render it;
:func:`exp_metrics` shapes it for ``dvc exp show``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from synthmix.config import Params
from synthmix.config.mixnames import MixSpec
from synthmix.core.atomic import atomic_open, write_json
from synthmix.core.errors import DataError, SynthmixError
from synthmix.core.paths import Input, Output
from synthmix.reporting.format import p_value, pct
from synthmix.stats import mcnemar_exact, mean_std_ci, paired_t  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("path", "actual", "predicted")
PLOT_COLUMNS = ("mix", "fake_pct", "accuracy_mean", "ci_low", "ci_high")
AUG_NUDGE = 2.5  # x offset (percentage points) of augN markers in the PNG, so they do not cover pctN


# --------------------------------------------------------------------------- mix names


def fake_share(mix: str) -> float:
    """Nominal share of synthetic images in the training set of ``mix`` (0..1)."""
    return MixSpec.parse(mix).fake_share


def ratio_label(mix: str) -> str:
    """The fake:real ratio as the source papers write it: ``"60:40"``, or ``"real + 100 %"``."""
    return MixSpec.parse(mix).ratio_label


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Predictions:
    """One run's per-image predictions on the test set; ``paths`` may be None if unknown."""

    actual: np.ndarray
    predicted: np.ndarray
    paths: Optional[np.ndarray] = None
    source: str = "predictions"

    @property
    def correct(self) -> np.ndarray:
        return self.actual == self.predicted

    def __len__(self) -> int:
        return len(self.actual)


PredictionsLike = Union[str, os.PathLike, Predictions, Mapping, Sequence]


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read a ``path,actual,predicted`` CSV written by the evaluate stage."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found: run the evaluate stage for this mix and seed")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty: expected a header {','.join(PREDICTION_COLUMNS)}")
        header = [h.strip() for h in header]
        missing = [c for c in ("actual", "predicted") if c not in header]
        if missing:
            raise DataError(
                f"{path}: header {','.join(header)} lacks {', '.join(missing)} "
                f"(expected {','.join(PREDICTION_COLUMNS)})"
            )
        idx = {c: header.index(c) for c in PREDICTION_COLUMNS if c in header}
        cols: dict[str, list[str]] = {c: [] for c in idx}
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path} line {lineno}: {len(row)} fields, the header has {len(header)}")
            for c, i in idx.items():
                cols[c].append(row[i])
    if not cols["actual"]:
        raise DataError(f"{path} has a header but no rows")
    return Predictions(
        actual=np.asarray(cols["actual"], dtype=object),
        predicted=np.asarray(cols["predicted"], dtype=object),
        paths=np.asarray(cols["path"], dtype=object) if "path" in cols else None,
        source=str(path),
    )


def _as_predictions(obj: PredictionsLike, where: str) -> Predictions:
    if isinstance(obj, Predictions):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return load_predictions(obj)
    if isinstance(obj, Mapping):
        if "actual" not in obj or "predicted" not in obj:
            raise SynthmixError(f"predictions for {where} need keys 'actual' and 'predicted', got {list(obj)}")
        paths = obj.get("path", obj.get("paths"))
        parts: tuple = (paths, obj["actual"], obj["predicted"])
    elif isinstance(obj, Sequence) and len(obj) in (2, 3):
        parts = (None, *obj) if len(obj) == 2 else tuple(obj)
    else:
        raise SynthmixError(
            f"predictions for {where}: expected a CSV path, a Predictions, a mapping with "
            f"'actual'/'predicted' (and optionally 'path'), or (path, actual, predicted); got {type(obj).__name__}"
        )
    paths, actual, predicted = parts
    actual = np.asarray(actual, dtype=object)
    predicted = np.asarray(predicted, dtype=object)
    if actual.shape != predicted.shape or actual.ndim != 1:
        raise DataError(f"predictions for {where}: 'actual' and 'predicted' must be 1-D of equal length")
    if paths is not None:
        paths = np.asarray(paths, dtype=object)
        if paths.shape != actual.shape:
            raise DataError(f"predictions for {where}: 'path' has {len(paths)} rows, 'actual' {len(actual)}")
    return Predictions(actual=actual, predicted=predicted, paths=paths, source=where)


def _check_same_rows(ref: Predictions, other: Predictions) -> None:
    """Every run must be scored on the same test images in the same order."""
    hint = "every run must be evaluated on the same test rows in the same order: re-run the evaluate stage"
    if len(other) != len(ref):
        raise DataError(f"{other.source} has {len(other)} rows but {ref.source} has {len(ref)}: {hint}")
    if ref.paths is not None and other.paths is not None:
        bad = np.flatnonzero(ref.paths != other.paths)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{other.source} data row {i + 1} is {other.paths[i]!r} but {ref.source} data row {i + 1} is "
                f"{ref.paths[i]!r} ({bad.size} rows differ): {hint}"
            )
    bad = np.flatnonzero(ref.actual != other.actual)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{other.source} data row {i + 1} has actual class {other.actual[i]!r} but {ref.source} has "
            f"{ref.actual[i]!r} ({bad.size} rows differ): {hint}"
        )


# --------------------------------------------------------------------------- summary


def _index_runs(run_metrics: Sequence[Mapping]) -> dict[tuple[str, int], Mapping]:
    runs: dict[tuple[str, int], Mapping] = {}
    for i, m in enumerate(run_metrics):
        where = m.get("_source", f"run_metrics[{i}]") if isinstance(m, Mapping) else f"run_metrics[{i}]"
        if not isinstance(m, Mapping):
            raise DataError(f"{where} must be a dict, got {type(m).__name__}")
        missing = [k for k in ("mix", "seed", "accuracy") if k not in m]
        if missing:
            raise DataError(f"{where} lacks {', '.join(missing)} (has: {', '.join(map(str, m))})")
        acc = m["accuracy"]
        if not isinstance(acc, (int, float)) or not 0.0 <= float(acc) <= 1.0:
            raise DataError(f"{where}: accuracy = {acc!r} must be a fraction in [0, 1]")
        try:
            seed = int(m["seed"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: seed = {m['seed']!r} is not an integer") from None
        key = (str(m["mix"]), seed)
        if key in runs:
            raise DataError(f"{where}: mix {key[0]} seed {key[1]} appears twice in the run metrics")
        runs[key] = m
    return runs


def summarize(
    run_metrics: Sequence[Mapping],
    predictions: Optional[Mapping[tuple[str, int], PredictionsLike]],
    mixes: Sequence[str],
    baseline: str,
    confidence: float,
    *,
    seeds: Optional[Sequence[int]] = None,
) -> dict:
    """Summarize per-run metrics into one dict per mix (in the order of ``mixes``).

    ``predictions`` maps ``(mix, seed)`` to a predictions CSV path or loaded arrays (see
    :func:`_as_predictions`); it must cover every run summarized. ``None`` skips McNemar
    (its fields are then null). ``seeds``, if given, is the exact seed set every mix must
    have; otherwise every mix must have the baseline's seeds.

    Raises :class:`SynthmixError` (a :class:`DataError`) when the baseline is missing, a mix
    has no runs, seeds differ between mixes, or prediction files disagree on rows/order.
    """
    mixes = list(mixes)
    if not mixes:
        raise SynthmixError("no mixes to summarize")
    for mix in mixes:
        MixSpec.parse(mix)
    if len(set(mixes)) != len(mixes):
        raise SynthmixError(f"mix names repeat: {mixes}")
    if baseline not in mixes:
        raise SynthmixError(f"baseline mix {baseline!r} is not among the mixes to summarize {mixes}")
    if not 0.0 < confidence < 1.0:
        raise SynthmixError(f"confidence = {confidence!r} must be strictly between 0 and 1")

    runs = _index_runs(run_metrics)
    seeds_of: dict[str, list[int]] = {m: sorted(s for (mm, s) in runs if mm == m) for m in mixes}
    extra = sorted({m for (m, _) in runs} - set(mixes))
    if extra:
        log.info("ignoring run metrics of mixes not listed: %s", ", ".join(extra))
    if not seeds_of[baseline]:
        raise DataError(f"no run metrics for the baseline mix {baseline!r}: evaluate it first")
    expected = sorted(int(s) for s in seeds) if seeds is not None else seeds_of[baseline]
    expected_from = "the requested seeds" if seeds is not None else f"the baseline {baseline}"
    for mix in mixes:
        have = seeds_of[mix]
        if not have:
            raise DataError(f"no run metrics for mix {mix!r} (expected seeds {expected})")
        if have != expected:
            missing = sorted(set(expected) - set(have))
            surplus = sorted(set(have) - set(expected))
            parts = []
            if missing:
                parts.append(f"missing seed(s) {missing}")
            if surplus:
                parts.append(f"extra seed(s) {surplus}")
            raise DataError(
                f"mix {mix} has seeds {have} but {expected_from} has {expected} ({'; '.join(parts)}): "
                "every mix needs the same training seeds for seed-matched comparisons"
            )

    # Predictions: load, check every run covers the same test rows in the same order.
    preds: dict[tuple[str, int], Predictions] = {}
    if predictions is not None:
        ref: Optional[Predictions] = None
        for mix in mixes:
            for seed in expected:
                key = (mix, seed)
                if key not in predictions:
                    raise DataError(f"no predictions for mix {mix} seed {seed}: McNemar's test needs them")
                p = _as_predictions(predictions[key], f"{mix} seed {seed}")
                if ref is None:
                    ref = p
                else:
                    _check_same_rows(ref, p)
                n_test = runs[key].get("n_test")
                if n_test is not None and int(n_test) != len(p):
                    raise DataError(
                        f"{p.source} has {len(p)} rows but its metrics say n_test = {n_test}: "
                        "the predictions and metrics come from different evaluate runs; re-run evaluate"
                    )
                acc_pred = float(np.mean(p.correct))
                if abs(acc_pred - float(runs[key]["accuracy"])) > 1e-3:
                    log.warning(
                        "%s: accuracy from predictions %.4f differs from metrics %.4f",
                        p.source, acc_pred, float(runs[key]["accuracy"]),
                    )
                preds[key] = p

    n_tests = {int(m["n_test"]) for m in runs.values() if m.get("n_test") is not None}
    n_test: Optional[int]
    if preds:
        n_test = len(next(iter(preds.values())))
    elif len(n_tests) == 1:
        n_test = n_tests.pop()
    elif n_tests:
        raise DataError(f"runs were evaluated on test sets of different sizes: {sorted(n_tests)}")
    else:
        n_test = None

    base_acc = [float(runs[(baseline, s)]["accuracy"]) for s in expected]
    out_mixes: dict[str, dict] = {}
    for mix in mixes:
        spec = MixSpec.parse(mix)
        kind, value = spec.kind, spec.value
        acc = [float(runs[(mix, s)]["accuracy"]) for s in expected]
        msc = mean_std_ci(acc, confidence)
        share = spec.fake_share
        rec: dict[str, Any] = {
            "kind": kind,
            "value": value,
            "ratio": spec.ratio_label,
            "fake_share": share,
            "fake_pct": 100.0 * share,
            "n_seeds": len(acc),
            "seeds": list(expected),
            "accuracy_per_seed": acc,
            "accuracy_mean": msc["mean"],
            "accuracy_std": msc["std"],
            "ci_low": msc["ci_low"],
            "ci_high": msc["ci_high"],
            "per_class_accuracy": _mean_per_class([runs[(mix, s)] for s in expected]),
            **_balanced([runs[(mix, s)] for s in expected], confidence),
            "is_baseline": mix == baseline,
            # cross-dataset evaluation (evaluate.extra_test_sets): mean over seeds of the per-run
            # average accuracy over the main and extra real test sets; None without extra sets
            "accuracy_avg_mean": (
                float(np.mean([float(runs[(mix, s)]["accuracy_avg"]) for s in expected]))
                if all("accuracy_avg" in runs[(mix, s)] for s in expected)
                else None
            ),
        }
        if mix == baseline:
            rec.update(delta_points=0.0, delta_points_per_seed=[0.0] * len(acc),
                       paired_t_statistic=None, paired_t_p=None, paired_t_note="baseline", mcnemar=None)
        else:
            diffs = [100.0 * (a - b) for a, b in zip(acc, base_acc)]
            t = paired_t(acc, base_acc)
            rec.update(
                delta_points=float(np.mean(diffs)),
                delta_points_per_seed=diffs,
                paired_t_statistic=t["statistic"],
                paired_t_p=t["p"],
                paired_t_note=t["note"],
                mcnemar=(
                    [
                        {"seed": s, **mcnemar_exact(preds[(baseline, s)].correct, preds[(mix, s)].correct)}
                        for s in expected
                    ]
                    if preds
                    else None
                ),
            )
        out_mixes[mix] = rec

    return {
        "baseline": baseline,
        "confidence": confidence,
        "seeds": list(expected),
        "n_test": n_test,
        "mixes": out_mixes,
    }


def _balanced(runs: Sequence[Mapping], confidence: float) -> dict[str, Any]:
    """Mean per-class accuracy over seeds (per seed, mean, std); nulls if a run lacks it."""
    values = [r.get("mean_per_class_accuracy") for r in runs]
    if any(not isinstance(v, (int, float)) for v in values):
        return {"mean_per_class_accuracy_per_seed": None, "mean_per_class_accuracy_mean": None,
                "mean_per_class_accuracy_std": None}
    msc = mean_std_ci([float(v) for v in values], confidence)
    return {"mean_per_class_accuracy_per_seed": [float(v) for v in values],
            "mean_per_class_accuracy_mean": msc["mean"], "mean_per_class_accuracy_std": msc["std"]}


def _mean_per_class(runs: Sequence[Mapping]) -> Optional[dict[str, float]]:
    tables = [r.get("per_class_accuracy") for r in runs]
    if any(not isinstance(t, Mapping) for t in tables):
        return None
    classes = list(tables[0])
    for t in tables[1:]:
        if set(t) != set(classes):
            raise DataError(f"per-class accuracy covers different classes across seeds: {classes} vs {list(t)}")
    return {c: float(np.mean([float(t[c]) for t in tables])) for c in classes}


def _round_sig(obj: Any, digits: int) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _round_sig(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_sig(v, digits) for v in obj]
    return obj


def exp_metrics(summary: dict, digits: int = 6) -> dict:
    """The summary shaped for ``dvc exp show``, floats rounded to ``digits`` significant digits.

    Columns: ``accuracy.<mix>`` (mean over seeds, a fraction), ``mean_per_class_accuracy.<mix>``
    (when the runs have it), ``accuracy_std.<mix>`` and
    ``delta_vs_baseline.<mix>`` (percentage points); with extra test sets also
    ``accuracy_avg.<mix>`` (the cross-dataset average). The full summary (intervals, tests,
    per-class accuracy) goes to a separate file, see :func:`rounded`, so that ``dvc exp show``
    stays readable.
    """
    mixes = summary["mixes"]
    out = {"accuracy": {m: r["accuracy_mean"] for m, r in mixes.items()}}
    if all(r.get("mean_per_class_accuracy_mean") is not None for r in mixes.values()):
        out["mean_per_class_accuracy"] = {m: r["mean_per_class_accuracy_mean"] for m, r in mixes.items()}
    out.update(
        accuracy_std={m: r["accuracy_std"] for m, r in mixes.items()},
        delta_vs_baseline={m: r["delta_points"] for m, r in mixes.items()},
    )
    if any(r.get("accuracy_avg_mean") is not None for r in mixes.values()):
        # with extra test sets: the average over all real test sets (``accuracy_avg.<mix>``)
        out["accuracy_avg"] = {m: r.get("accuracy_avg_mean") for m, r in mixes.items()}
    return _round_sig(out, digits)


def rounded(summary: dict, digits: int = 6) -> dict:
    """The full summary with floats rounded to ``digits`` significant digits."""
    return _round_sig(summary, digits)


# --------------------------------------------------------------------------- rendering


def markdown_table(summary: dict) -> str:
    """A Markdown table in the shape of the source papers' tables, with a one-line caption."""
    baseline = summary["baseline"]
    conf = round(100 * summary["confidence"], 2)
    conf_s = f"{conf:g} %"
    seeds = summary["seeds"]
    n_test = summary["n_test"]
    n_test_s = f"{n_test:,}".replace(",", " ") if n_test is not None else "?"
    mcnemar_order = "/".join(f"s{s}" for s in seeds)
    balanced = all(r.get("mean_per_class_accuracy_mean") is not None for r in summary["mixes"].values())
    caption = (
        f"Test accuracy (%) on the real test set (n_test = {n_test_s} images) over training seeds "
        f"{', '.join(map(str, seeds))} (n = {len(seeds)}): mean ± std, "
        + ("mean per-class accuracy (mean ± std), " if balanced else "")
        + f"{conf_s} Student-t CI of the mean{' accuracy' if balanced else ''}, "
        f"Δ in points vs {baseline}, paired t-test across seeds, McNemar exact p per seed ({mcnemar_order})."
    )
    header = (
        "| Mix | Fake:real | Accuracy (%) | " + ("Mean per-class acc. (%) | " if balanced else "")
        + f"{conf_s} CI | Δ vs {baseline} (pts) | paired t p | McNemar p ({mcnemar_order}) |"
    )
    lines = [caption, "", header, "|---|---|---:|" + ("---:|" if balanced else "") + "---:|---:|---:|---:|"]
    for mix, r in summary["mixes"].items():
        acc = pct(r["accuracy_mean"])
        if r["accuracy_std"] is not None:
            acc += f" ± {pct(r['accuracy_std'])}"
        ci = "–" if r["ci_low"] is None else f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
        if r["is_baseline"]:
            delta, pt, mc = "(baseline)", "–", "–"
        else:
            delta = f"{r['delta_points']:+.2f}"
            pt = p_value(r["paired_t_p"])
            mc = "–" if r["mcnemar"] is None else " / ".join(p_value(m["p"]) for m in r["mcnemar"])
        if balanced:
            bal = pct(r["mean_per_class_accuracy_mean"])
            if r["mean_per_class_accuracy_std"] is not None:
                bal += f" ± {pct(r['mean_per_class_accuracy_std'])}"
            acc = f"{acc} | {bal}"
        lines.append(f"| {mix} | {r['ratio']} | {acc} | {ci} | {delta} | {pt} | {mc} |")
    return "\n".join(lines) + "\n"


def plot_rows(summary: dict) -> list[dict]:
    """Rows for a DVC plot: mix, fake_pct, accuracy_mean, ci_low, ci_high (fractions; CI may be None)."""
    return [
        {
            "mix": mix,
            "fake_pct": r["fake_pct"],
            "accuracy_mean": r["accuracy_mean"],
            "ci_low": r["ci_low"],
            "ci_high": r["ci_high"],
        }
        for mix, r in summary["mixes"].items()
    ]


def write_plot_data(summary: dict, path: str | os.PathLike) -> None:
    """Write :func:`plot_rows` atomically: ``.json`` → a JSON list, anything else → CSV (null = empty)."""
    rows = plot_rows(summary)
    path = Path(path)
    if path.suffix.lower() == ".json":
        write_json(path, rows)
        return
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=PLOT_COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()})


def _draw_series(
    ax, items: list, color: str, marker: str, label: str, line: bool, conf_s: str, dx: float = 0.0
) -> None:
    """Means (big markers, CI error bars where defined) and per-seed points (small, hollow)."""
    if not items:
        return
    x = np.array([r["fake_pct"] + dx for _, r in items])
    y = np.array([100 * r["accuracy_mean"] for _, r in items])
    has_ci = np.array([r["ci_low"] is not None for _, r in items])
    lo = np.array([100 * (r["accuracy_mean"] - r["ci_low"]) if r["ci_low"] is not None else 0.0 for _, r in items])
    hi = np.array([100 * (r["ci_high"] - r["accuracy_mean"]) if r["ci_high"] is not None else 0.0 for _, r in items])
    if line:
        ax.plot(x, y, "-", color=color, lw=1.5, alpha=0.8, zorder=2)
    if has_ci.any():
        ax.errorbar(x[has_ci], y[has_ci], yerr=[lo[has_ci], hi[has_ci]], fmt="none", ecolor=color,
                    capsize=4, lw=1.2, zorder=3)
    ax.plot(x, y, marker, color=color, ms=8, ls="none", zorder=4,
            label=label + (f" (mean, {conf_s} CI)" if has_ci.any() else " (mean)"))
    for _, r in items:  # per-seed points, jittered sideways so that ties stay visible
        n = len(r["accuracy_per_seed"])
        jitter = np.linspace(-0.9, 0.9, n) if n > 1 else np.zeros(1)
        ax.plot(r["fake_pct"] + dx + jitter, 100 * np.asarray(r["accuracy_per_seed"]), marker,
                color=color, ms=4, ls="none", alpha=0.5, mfc="none", zorder=3)


def plot(summary: dict, png_path: str | os.PathLike) -> None:
    """Accuracy vs synthetic share, written atomically as PNG.

    pctN mixes: a line through the means with CI error bars; augN mixes: separate diamond
    markers, annotated with their ratio (their size differs from the pctN training sets).
    Per-seed accuracies are small hollow points; a dotted line marks the baseline mean.
    """
    # The Agg canvas directly: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mixes = summary["mixes"]
    pct = sorted(((m, r) for m, r in mixes.items() if r["kind"] == "pct"), key=lambda mr: mr[1]["fake_pct"])
    aug = [(m, r) for m, r in mixes.items() if r["kind"] == "aug"]
    swap = sorted(((m, r) for m, r in mixes.items() if MixSpec.parse(m).is_swap), key=lambda mr: mr[1]["fake_pct"])
    conf_s = f"{round(100 * summary['confidence'], 2):g} %"

    fig = Figure(figsize=(7.5, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _draw_series(ax, pct, "tab:blue", "o", "fixed total, N % synthetic (pctN)", True, conf_s)
    # augN sits at its true share (aug100 = 50 %), nudged right so it does not hide pct50
    _draw_series(ax, aug, "tab:orange", "D", "all real + N % as many synthetic (augN)", False, conf_s, dx=AUG_NUDGE)
    # swap mixes (lrrN / grrN) sit at their swap probability, nudged left
    _draw_series(ax, swap, "tab:green", "s", "real, swapped per draw with prob. N % (lrrN / grrN)", False,
                 conf_s, dx=-AUG_NUDGE)
    for m, r in swap:
        ax.annotate(m, (r["fake_pct"] - AUG_NUDGE, 100 * r["accuracy_mean"]), textcoords="offset points",
                    xytext=(-6, -14), ha="right", fontsize=8, color="tab:green", zorder=5)
    for m, r in aug:
        ax.annotate(f"{m} ({r['ratio']})", (r["fake_pct"] + AUG_NUDGE, 100 * r["accuracy_mean"]),
                    textcoords="offset points", xytext=(-10, 10), ha="right", fontsize=8, color="tab:orange",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}, zorder=5)
    base = mixes[summary["baseline"]]
    ax.axhline(100 * base["accuracy_mean"], color="grey", ls=":", lw=1, zorder=1,
               label=f"baseline {summary['baseline']} mean")
    ax.plot([], [], "o", color="grey", ms=4, mfc="none", ls="none", label="single seeds")

    ax.set_xlim(-5, 105)
    ax.set_xticks(range(0, 101, 10))
    ax.set_xlabel("synthetic share of the training set (%)")
    ax.set_ylabel("test accuracy on real images (%)")
    seeds = ", ".join(map(str, summary["seeds"]))
    n_test = summary["n_test"]
    ax.set_title(f"Accuracy vs fake:real ratio  (n_test = {n_test if n_test else '?'}, seeds {seeds})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_open(png_path, "wb") as fh:
        fig.savefig(fh, format="png")


def read_run_metrics(metrics_dir: Path, mix: str, seed: int) -> dict:
    """One evaluate run's metrics file, checked against the (mix, seed) its name says."""
    import json

    path = metrics_dir / f"{mix}-seed{seed}.json"
    if not path.is_file():
        raise DataError(
            f"{path} is missing: run the evaluate stage for mix {mix}, seed {seed} first (e.g. `dvc repro`)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): re-run the evaluate stage for it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if ("mix" in data and data["mix"] != mix) or ("seed" in data and data["seed"] != seed):
        raise DataError(
            f"{path} says mix {data.get('mix')!r} seed {data.get('seed')!r}, its name says {mix} seed {seed}"
        )
    return {**data, "mix": mix, "seed": seed, "_source": str(path)}


def summarize_stage(params: Params, *, runs: Input, predictions: Input, out: Output, details: Output,
                    table: Output, plot_data: Output, png: Output) -> None:
    """Stage summarize: accuracy per mix over training seeds, tests against the baseline mix,
    a Markdown table, plot data for DVC and a PNG plot of accuracy vs synthetic share."""
    from synthmix.core.atomic import write_text

    mixes, seeds = list(params.mix.names), list(params.train.seeds)
    run_metrics, prediction_files = [], {}
    for mix in mixes:
        for seed in seeds:
            run_metrics.append(read_run_metrics(Path(runs), mix, seed))
            pred = Path(predictions) / f"{mix}-seed{seed}.csv"
            if not pred.is_file():
                raise DataError(
                    f"{pred} is missing: run the evaluate stage for mix {mix}, seed {seed} first (e.g. `dvc repro`)"
                )
            prediction_files[(mix, seed)] = pred
    log.info("summarizing %d mixes x %d seeds against %s", len(mixes), len(seeds), params.summarize.baseline)
    summary = summarize(run_metrics, prediction_files, mixes, params.summarize.baseline,
                        params.summarize.confidence, seeds=seeds)
    text = markdown_table(summary)
    write_json(out, exp_metrics(summary))
    write_json(details, rounded(summary))
    write_text(table, text)
    write_plot_data(summary, plot_data)
    plot(summary, png)
    print(text, end="")
