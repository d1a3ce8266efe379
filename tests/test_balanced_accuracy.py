"""Mean per-class accuracy (balanced accuracy, DA-Fusion's metric): evaluate and the summary."""

import numpy as np
import pytest
import torch

from synthmix.classify.evaluate import classification_scores
from synthmix.reporting.classification import exp_metrics, markdown_table, summarize


def test_mean_per_class_accuracy_is_the_mean_recall_on_an_unbalanced_set():
    rng = np.random.default_rng(0)
    actual = np.repeat([0, 1, 2], [50, 10, 5])
    predicted = np.where(rng.random(65) < 0.7, actual, rng.integers(0, 4, 65))
    # class 3 has no test image (but some predictions): left out of the mean, as scikit-learn does
    scores = classification_scores(torch.from_numpy(actual), torch.from_numpy(predicted), ["a", "b", "c", "d"])
    recalls = [np.mean(predicted[actual == c] == c) for c in (0, 1, 2)]  # by hand
    assert scores["mean_per_class_accuracy"] == pytest.approx(np.mean(recalls))
    assert scores["per_class_accuracy"]["d"] is None
    assert scores["accuracy"] == pytest.approx(np.mean(actual == predicted))
    assert scores["accuracy"] != pytest.approx(scores["mean_per_class_accuracy"])


def _runs(with_balanced: bool):
    runs = []
    for mix, acc in (("pct0", 0.9), ("lrr50", 0.92), ("grr50", 0.91)):
        for seed in (0, 1):
            extra = {"mean_per_class_accuracy": acc - 0.01 * (seed + 1)} if with_balanced else {}
            runs.append({"mix": mix, "seed": seed, "accuracy": acc + 0.001 * seed, **extra})
    return runs


def test_summary_reports_mean_per_class_accuracy_next_to_accuracy():
    s = summarize(_runs(True), None, ["pct0", "lrr50", "grr50"], "pct0", 0.95)
    assert s["mixes"]["lrr50"]["mean_per_class_accuracy_mean"] == pytest.approx(0.92 - 0.015)
    assert s["mixes"]["lrr50"]["mean_per_class_accuracy_per_seed"] == pytest.approx([0.91, 0.90])
    m = exp_metrics(s)
    assert list(m)[:2] == ["accuracy", "mean_per_class_accuracy"]
    assert m["mean_per_class_accuracy"]["pct0"] == pytest.approx(0.885)
    lines = markdown_table(s).splitlines()
    header = [c.strip() for c in lines[2].split("|")]
    assert header[3:5] == ["Accuracy (%)", "Mean per-class acc. (%)"]
    row = [c.strip() for c in lines[5].split("|")]
    assert row[1:3] == ["lrr50", "swap 50 % (own variants)"] and row[4] == "90.50 ± 0.71"
    assert len(lines[3].split("|")) == len(lines[2].split("|"))


def test_summary_without_the_metric_keeps_its_old_shape():
    s = summarize(_runs(False), None, ["pct0", "lrr50", "grr50"], "pct0", 0.95)
    assert list(exp_metrics(s)) == ["accuracy", "accuracy_std", "delta_vs_baseline"]
    assert "per-class" not in markdown_table(s)
