"""The summarize stage: numbers people quote in a paper table must be right."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import stats

from synthmix.core.errors import DataError, SynthmixError
from synthmix.reporting.classification import (
    exp_metrics,
    fake_share,
    load_predictions,
    markdown_table,
    plot,
    plot_rows,
    ratio_label,
    summarize,
    write_plot_data,
)

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b"]


def run(mix: str, seed: int, acc: float, **extra) -> dict:
    return {"mix": mix, "seed": seed, "accuracy": acc, **extra}


def preds_from_correct(correct, n_paths=None) -> dict:
    """Predictions whose per-image correctness is ``correct`` (actual alternates a/b)."""
    correct = np.asarray(correct, dtype=bool)
    actual = np.array([CLASSES[i % 2] for i in range(len(correct))], dtype=object)
    wrong = np.array([CLASSES[(i + 1) % 2] for i in range(len(correct))], dtype=object)
    paths = [f"img{i:03d}.png" for i in range(len(correct))]
    return {"path": paths, "actual": actual, "predicted": np.where(correct, actual, wrong)}


# ---------------------------------------------------------------- mix names


def test_fake_share_and_ratio_labels():
    assert fake_share("pct0") == 0.0
    assert fake_share("pct60") == pytest.approx(0.6)
    assert fake_share("pct100") == 1.0
    assert fake_share("aug100") == pytest.approx(0.5)  # N / (100 + N)
    assert fake_share("aug50") == pytest.approx(50 / 150)
    assert ratio_label("pct60") == "60:40"
    assert ratio_label("pct0") == "0:100"
    assert ratio_label("aug100") == "real + 100 %"


# ---------------------------------------------------------------- statistics


def test_mean_std_ci_match_hand_computed_values():
    runs = [run("pct0", s, a) for s, a in zip((0, 1, 2), (0.90, 0.92, 0.94))]
    s = summarize(runs, None, ["pct0"], "pct0", 0.95)
    r = s["mixes"]["pct0"]
    assert r["n_seeds"] == 3
    assert r["accuracy_per_seed"] == [0.90, 0.92, 0.94]
    assert r["accuracy_mean"] == pytest.approx(0.92)
    assert r["accuracy_std"] == pytest.approx(0.02)  # ddof=1: sqrt((0.02² + 0 + 0.02²) / 2)
    # t(0.975, df=2) = 4.302653 (tables); half-width = 4.302653 * 0.02 / sqrt(3) = 0.049683
    assert r["ci_low"] == pytest.approx(0.92 - 0.0496827, abs=1e-6)
    assert r["ci_high"] == pytest.approx(0.92 + 0.0496827, abs=1e-6)


def test_ci_widens_with_confidence():
    runs = [run("pct0", s, a) for s, a in zip((0, 1, 2), (0.90, 0.92, 0.94))]
    r90 = summarize(runs, None, ["pct0"], "pct0", 0.90)["mixes"]["pct0"]
    # t(0.95, df=2) = 2.919986
    assert r90["ci_high"] - 0.92 == pytest.approx(2.919986 * 0.02 / math.sqrt(3), abs=1e-6)


def test_paired_t_matches_scipy_and_closed_form():
    base = [0.89, 0.90, 0.935]
    mix = [0.90, 0.92, 0.94]  # differences 0.01, 0.02, 0.005: t = sqrt(7) exactly
    runs = [run("pct0", s, a) for s, a in enumerate(base)] + [run("pct60", s, a) for s, a in enumerate(mix)]
    r = summarize(runs, None, ["pct0", "pct60"], "pct0", 0.95)["mixes"]["pct60"]
    ref = stats.ttest_rel(mix, base)
    assert r["paired_t_statistic"] == pytest.approx(ref.statistic)
    assert r["paired_t_p"] == pytest.approx(ref.pvalue)
    assert r["paired_t_statistic"] == pytest.approx(math.sqrt(7))
    assert r["paired_t_p"] == pytest.approx(1 - math.sqrt(7) / 3)  # df = 2: p = 1 - t / sqrt(2 + t²)
    assert r["delta_points"] == pytest.approx(100 * (0.01 + 0.02 + 0.005) / 3)
    assert r["delta_points_per_seed"] == pytest.approx([1.0, 2.0, 0.5])


def test_paired_t_is_null_when_every_seed_differs_by_the_same_amount():
    runs = [run("pct0", 0, 0.9), run("pct0", 1, 0.8), run("pct50", 0, 0.91), run("pct50", 1, 0.81)]
    r = summarize(runs, None, ["pct0", "pct50"], "pct0", 0.95)["mixes"]["pct50"]
    assert r["paired_t_p"] is None and r["paired_t_statistic"] is None
    assert "variance" in r["paired_t_note"]
    assert r["delta_points"] == pytest.approx(1.0)
    runs = [run("pct0", 0, 0.9), run("pct0", 1, 0.8), run("pct50", 0, 0.9), run("pct50", 1, 0.8)]
    assert summarize(runs, None, ["pct0", "pct50"], "pct0", 0.95)["mixes"]["pct50"]["paired_t_p"] is None


def test_mcnemar_per_seed_on_crafted_case():
    # 20 images: 10 both right, 2 only the baseline right, 8 only the mix right, 0 both wrong
    # (the test itself: tests/test_stats.py)
    base = [True] * 10 + [True] * 2 + [False] * 8
    mix = [True] * 10 + [False] * 2 + [True] * 8
    runs = [run("pct0", 0, 0.6), run("pct70", 0, 0.9)]
    predictions = {("pct0", 0): preds_from_correct(base), ("pct70", 0): preds_from_correct(mix)}
    r = summarize(runs, predictions, ["pct0", "pct70"], "pct0", 0.95)["mixes"]["pct70"]
    assert r["mcnemar"] == [{"seed": 0, "baseline_only": 2, "mix_only": 8, "p": pytest.approx(0.109375)}]


def test_one_seed_gives_nulls_not_crashes(tmp_path):
    base = [True] * 15 + [False] * 5
    mix = [True] * 12 + [False] * 8
    runs = [run("pct0", 0, 0.75, n_test=20), run("pct60", 0, 0.6, n_test=20), run("aug100", 0, 0.8, n_test=20)]
    predictions = {
        ("pct0", 0): preds_from_correct(base),
        ("pct60", 0): preds_from_correct(mix),
        ("aug100", 0): preds_from_correct(base),
    }
    s = summarize(runs, predictions, ["pct0", "pct60", "aug100"], "pct0", 0.95)
    r = s["mixes"]["pct60"]
    assert r["n_seeds"] == 1
    assert r["accuracy_std"] is None and r["ci_low"] is None and r["ci_high"] is None
    assert r["paired_t_p"] is None and r["delta_points"] == pytest.approx(-15.0)
    assert r["mcnemar"][0]["baseline_only"] == 3 and r["mcnemar"][0]["mix_only"] == 0
    # every renderer copes with the nulls
    table = markdown_table(s)
    assert "| pct60 | 60:40 | 60.00 | – | -15.00 | – |" in table
    plot(s, tmp_path / "one.png")
    with Image.open(tmp_path / "one.png") as im:
        assert im.format == "PNG"
    write_plot_data(s, tmp_path / "one.csv")
    with open(tmp_path / "one.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[1] == {"mix": "pct60", "fake_pct": "60", "accuracy_mean": "0.6", "ci_low": "", "ci_high": ""}
    json.dumps(exp_metrics(s), allow_nan=False)


def test_per_class_accuracy_is_averaged_over_seeds():
    runs = [
        run("pct0", 0, 0.8, per_class_accuracy={"a": 0.7, "b": 0.9}),
        run("pct0", 1, 0.9, per_class_accuracy={"a": 0.8, "b": 1.0}),
    ]
    r = summarize(runs, None, ["pct0"], "pct0", 0.95)["mixes"]["pct0"]
    assert r["per_class_accuracy"] == pytest.approx({"a": 0.75, "b": 0.95})


# ---------------------------------------------------------------- validation


def test_missing_baseline_is_an_error():
    with pytest.raises(SynthmixError, match="baseline mix 'pct0'"):
        summarize([run("pct50", 0, 0.9)], None, ["pct50"], "pct0", 0.95)
    with pytest.raises(DataError, match="no run metrics for the baseline mix 'pct0'"):
        summarize([run("pct50", 0, 0.9)], None, ["pct0", "pct50"], "pct0", 0.95)


def test_mismatched_seeds_are_an_error():
    runs = [run("pct0", 0, 0.9), run("pct0", 1, 0.9), run("pct60", 0, 0.8), run("pct60", 2, 0.8)]
    with pytest.raises(DataError, match=r"mix pct60 has seeds \[0, 2\].*missing seed\(s\) \[1\].*extra seed\(s\) \[2\]"):
        summarize(runs, None, ["pct0", "pct60"], "pct0", 0.95)
    with pytest.raises(DataError, match=r"missing seed\(s\) \[1\]"):
        summarize([run("pct0", 0, 0.9)], None, ["pct0"], "pct0", 0.95, seeds=[0, 1])
    with pytest.raises(DataError, match="appears twice"):
        summarize([run("pct0", 0, 0.9), run("pct0", 0, 0.8)], None, ["pct0"], "pct0", 0.95)


def _write_preds(path: Path, rows) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "actual", "predicted"])
        w.writerows(rows)
    return path


def test_prediction_files_with_different_rows_or_order_are_an_error(tmp_path):
    rows = [("x0.png", "a", "a"), ("x1.png", "b", "a"), ("x2.png", "a", "b")]
    base = _write_preds(tmp_path / "pct0-seed0.csv", rows)
    swapped = _write_preds(tmp_path / "pct60-seed0.csv", [rows[1], rows[0], rows[2]])
    shorter = _write_preds(tmp_path / "pct70-seed0.csv", rows[:2])
    runs = [run("pct0", 0, 1 / 3), run("pct60", 0, 1 / 3)]
    with pytest.raises(DataError, match=r"pct60-seed0.csv data row 1 is 'x1.png' but .*pct0-seed0.csv data row 1 is 'x0.png'"):
        summarize(runs, {("pct0", 0): base, ("pct60", 0): swapped}, ["pct0", "pct60"], "pct0", 0.95)
    runs = [run("pct0", 0, 1 / 3), run("pct70", 0, 0.5)]
    with pytest.raises(DataError, match="has 2 rows but .* has 3"):
        summarize(runs, {("pct0", 0): base, ("pct70", 0): shorter}, ["pct0", "pct70"], "pct0", 0.95)
    # without a path column the actual labels still catch a reordering
    nopath = {"actual": ["b", "a", "a"], "predicted": ["a", "a", "b"]}
    runs = [run("pct0", 0, 1 / 3), run("pct60", 0, 1 / 3)]
    with pytest.raises(DataError, match="actual class"):
        summarize(runs, {("pct0", 0): base, ("pct60", 0): nopath}, ["pct0", "pct60"], "pct0", 0.95)
    # n_test in the metrics must match the predictions
    runs = [run("pct0", 0, 1 / 3, n_test=6000)]
    with pytest.raises(DataError, match="n_test = 6000"):
        summarize(runs, {("pct0", 0): base}, ["pct0"], "pct0", 0.95)
    with pytest.raises(DataError, match="no predictions for mix pct60 seed 0"):
        summarize([run("pct0", 0, 0.5), run("pct60", 0, 0.5)], {("pct0", 0): base}, ["pct0", "pct60"], "pct0", 0.95)


def test_load_predictions_reads_the_evaluate_csv(tmp_path):
    p = load_predictions(_write_preds(tmp_path / "p.csv", [("x0.png", "a", "a"), ("x1.png", "b", "a")]))
    assert list(p.paths) == ["x0.png", "x1.png"]
    assert list(p.correct) == [True, False]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.png,a\n")
    with pytest.raises(DataError, match="lacks actual, predicted"):
        load_predictions(bad)


# ---------------------------------------------------------------- rendering


def _study(n_seeds: int = 2) -> dict:
    rng = np.random.default_rng(0)
    accs = {"pct0": 0.91, "pct50": 0.90, "pct60": 0.90, "pct80": 0.88, "pct100": 0.75, "aug100": 0.92}
    n = 200
    runs, predictions = [], {}
    for mix, a in accs.items():
        for seed in range(n_seeds):
            correct = rng.random(n) < a
            runs.append(run(mix, seed, float(correct.mean()), n_test=n))
            predictions[(mix, seed)] = preds_from_correct(correct)
    return summarize(runs, predictions, list(accs), "pct0", 0.95)


def test_table_has_one_row_per_mix_with_its_ratio_and_a_caption():
    s = _study()
    table = markdown_table(s)
    lines = table.splitlines()
    assert "n_test = 200" in lines[0] and "seeds 0, 1" in lines[0]
    header = lines[2]
    for col in ("Fake:real", "Accuracy (%)", "95 % CI", "Δ vs pct0", "paired t p", "McNemar p (s0/s1)"):
        assert col in header
    body = [ln for ln in lines[4:] if ln.startswith("|")]
    assert [ln.split("|")[1].strip() for ln in body] == ["pct0", "pct50", "pct60", "pct80", "pct100", "aug100"]
    ratios = [ln.split("|")[2].strip() for ln in body]
    assert ratios == ["0:100", "50:50", "60:40", "80:20", "100:0", "real + 100 %"]
    r = s["mixes"]["pct60"]
    assert f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}" in body[2]
    assert "(baseline)" in body[0]
    assert body[2].count(" / ") == 1  # McNemar p for both seeds


def test_plot_writes_a_valid_png_and_plot_rows(tmp_path):
    s = _study()
    png = tmp_path / "sub" / "acc.png"
    plot(s, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    assert not list(png.parent.glob(".*.tmp"))  # atomic write leaves no temp file
    rows = plot_rows(s)
    assert [r["mix"] for r in rows] == ["pct0", "pct50", "pct60", "pct80", "pct100", "aug100"]
    assert rows[-1]["fake_pct"] == pytest.approx(50.0)
    assert all(r["ci_low"] <= r["accuracy_mean"] <= r["ci_high"] for r in rows)
    write_plot_data(s, tmp_path / "rows.json")
    assert json.loads((tmp_path / "rows.json").read_text())[2]["mix"] == "pct60"


def test_exp_metrics_keeps_few_top_level_columns():
    m = exp_metrics(_study())
    assert list(m) == ["accuracy", "accuracy_std", "delta_vs_baseline"]
    assert set(m["accuracy"]) == {"pct0", "pct50", "pct60", "pct80", "pct100", "aug100"}
    assert m["delta_vs_baseline"]["pct0"] == 0.0
    json.dumps(m, allow_nan=False)


# ---------------------------------------------------------------- the stage script


def _stage(monkeypatch, tmp_path) -> None:
    """The summarize stage as dvc.yaml runs it, with its paths relative to the repository."""
    from synthmix.config import load_params
    from synthmix.reporting.classification import summarize_stage
    from synthmix.runner import stage_parser

    monkeypatch.chdir(tmp_path)
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["summarize"]["cmd"].split()[2:]
    args = vars(stage_parser(summarize_stage).parse_args(cmd))
    summarize_stage(load_params(args.pop("params")), **args)


def test_stage_writes_all_outputs_and_names_a_missing_file(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    mixes, seeds = params["mix"]["names"], params["train"]["seeds"]
    rng = np.random.default_rng(1)
    (tmp_path / "metrics" / "cls").mkdir(parents=True)
    (tmp_path / "metrics" / "predictions").mkdir(parents=True)
    for mix in mixes:
        for seed in seeds:
            correct = rng.random(50) < 0.8
            p = preds_from_correct(correct)
            _write_preds(
                tmp_path / "metrics" / "predictions" / f"{mix}-seed{seed}.csv",
                zip(p["path"], p["actual"], p["predicted"]),
            )
            (tmp_path / "metrics" / "cls" / f"{mix}-seed{seed}.json").write_text(
                json.dumps({"mix": mix, "seed": seed, "accuracy": float(correct.mean()), "n_test": 50})
            )
    _stage(monkeypatch, tmp_path)
    out = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    assert list(out["accuracy"]) == mixes
    assert (tmp_path / "metrics" / "summary.md").read_text().count("\n| ") == len(mixes) + 1
    assert (tmp_path / "metrics" / "accuracy_vs_fake.csv").read_text().startswith(
        "mix,fake_pct,accuracy_mean,ci_low,ci_high"
    )
    assert (tmp_path / "metrics" / "accuracy_vs_fake.png").read_bytes()[:4] == b"\x89PNG"

    gone = tmp_path / "metrics" / "cls" / f"{mixes[-1]}-seed{seeds[-1]}.json"
    gone.unlink()
    with pytest.raises(DataError, match=rf"{mixes[-1]}-seed{seeds[-1]}.json is missing: run the evaluate stage"):
        _stage(monkeypatch, tmp_path)
