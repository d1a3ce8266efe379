"""Evaluation of a trained classifier on the real test split."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Optional

import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from synthmix.classify.train import load_classifier, load_images, predict
from synthmix.core.atomic import atomic_open
from synthmix.core.device import autocast_dtype, pick_device
from synthmix.core.errors import DataError
from synthmix.config import Params
from synthmix.core.stage import Input, Output

log = logging.getLogger(__name__)


def confusion_matrix(actual: torch.Tensor, predicted: torch.Tensor, n: int) -> torch.Tensor:
    """Counts (int64, n x n): rows are actual classes, columns predicted ones (torchmetrics)."""
    return multiclass_confusion_matrix(predicted, actual, num_classes=n)


def accuracies(cm: torch.Tensor) -> tuple[float, list[Optional[float]]]:
    """Overall accuracy and per-class accuracy (recall, rounded to 6 places; None for a class
    with no actual image) from a confusion matrix: float32 quotients, as torch's mean of the hits."""
    hits, support = cm.diagonal().float(), cm.sum(1).float()
    per_class = [round((h / s).item(), 6) if s else None for h, s in zip(hits, support)]
    return (hits.sum() / support.sum()).item(), per_class


def mean_per_class_accuracy(cm: torch.Tensor) -> float:
    """Mean per-class accuracy (balanced accuracy, DA-Fusion's metric): the unweighted mean of
    the per-class recalls over the classes that have test images (as scikit-learn's
    ``balanced_accuracy_score``); equals the accuracy when every class has as many test images."""
    hits, support = cm.diagonal().double(), cm.sum(1).double()
    present = support > 0
    return (hits[present] / support[present]).mean().item()


def evaluate_classifier(
    checkpoint: Path,
    test_records: list[dict],
    predictions_csv: Path,
    batch_size: int = 256,
    device: str = "auto",
    relative_to: Path | None = None,
    stage: str = "train",
) -> dict:
    """Accuracy, per-class accuracy and confusion matrix (torchmetrics) on ``test_records``.

    Every prediction is written to ``predictions_csv`` (path, actual, predicted): DVC draws
    the confusion matrix from it, and the summary's McNemar test pairs runs image by image.
    """
    dev = pick_device(device)
    model, ckpt = load_classifier(checkpoint, dev, stage)
    classes = ckpt["classes"]
    if any(r["source"] != "real" for r in test_records):
        raise DataError("the test split must hold real images only")
    x, y = load_images(test_records, classes, ckpt["input_size"], "loading test")
    mean = torch.tensor(ckpt["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["std"], device=dev).view(1, 3, 1, 1)
    pred = predict(model, x, mean, std, dev, batch_size, autocast_dtype(dev))
    cm = confusion_matrix(y, pred, len(classes))
    accuracy, per_class = accuracies(cm)
    base = Path(relative_to) if relative_to else Path.cwd()
    with atomic_open(predictions_csv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "actual", "predicted"])
        for rec, a, p in zip(test_records, y.tolist(), pred.tolist()):
            writer.writerow([Path(os.path.relpath(rec["path"], base)).as_posix(), classes[a], classes[p]])
    log.info("test accuracy %.4f on %d images", accuracy, len(y))
    return {
        "accuracy": round(accuracy, 6),
        "mean_per_class_accuracy": round(mean_per_class_accuracy(cm), 6),
        "n_test": len(y),
        "per_class_accuracy": dict(zip(classes, per_class)),
        "confusion_matrix": {"classes": classes, "rows_actual_cols_predicted": cm.tolist()},
        "best_epoch": ckpt["best_epoch"],
        "best_val_accuracy": round(ckpt["val_accuracy"], 6),
    }


def evaluate_extra_sets(checkpoint: Path, specs: list, batch_size: int = 256, device: str = "auto",
                        stage: str = "train") -> dict[str, dict]:
    """Accuracy of one classifier on each extra real test set (``evaluate.extra_test_sets``).

    Returns {set name: {accuracy, n_test, per_class_accuracy, class_map, source}}; see
    :mod:`synthmix.classify.crossdata` for loading and class mapping.
    """
    from synthmix.classify.crossdata import load_test_set

    if not specs:
        return {}
    dev = pick_device(device)
    model, ckpt = load_classifier(checkpoint, dev, stage)
    classes = ckpt["classes"]
    mean = torch.tensor(ckpt["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["std"], device=dev).view(1, 3, 1, 1)
    out = {}
    for spec in specs:
        x, y, info = load_test_set(spec, classes, ckpt["input_size"])
        pred = predict(model, x, mean, std, dev, batch_size, autocast_dtype(dev))
        cm = confusion_matrix(y, pred, len(classes))
        accuracy, per_class = accuracies(cm)
        out[spec.name] = {
            "accuracy": round(accuracy, 6),
            "mean_per_class_accuracy": round(mean_per_class_accuracy(cm), 6),
            "n_test": len(y),
            "per_class_accuracy": {c: a for c, a in zip(classes, per_class) if a is not None},
            **{k: v for k, v in info.items() if k != "n"},
        }
        log.info("%s: accuracy %.4f on %d images", spec.name, out[spec.name]["accuracy"], len(y))
    return out


def evaluate_stage(params: Params, mix: str, seed: int, *, checkpoint: Input, test: Input,
                   predictions: Output, metrics: Output) -> None:
    """Stage evaluate: accuracy, per-class accuracy and confusion matrix of one run on the real
    test split, and, with evaluate.extra_test_sets, the accuracy on each extra real test set
    and their average."""
    from synthmix.classify.crossdata import cross_dataset_summary
    from synthmix.core.atomic import write_json
    from synthmix.data.manifest import read_manifest

    p = params.evaluate
    writer = f"train@{mix}-{seed}"  # the stage that writes the checkpoint, named in errors
    result = evaluate_classifier(checkpoint, read_manifest(test), predictions, batch_size=p.batch_size,
                                 device=params.device, stage=writer)
    if p.extra_test_sets:  # cross-dataset evaluation: accuracy per extra real test set and the average
        extra = evaluate_extra_sets(checkpoint, list(p.extra_test_sets), batch_size=p.batch_size, device=params.device,
                                    stage=writer)
        result.update(cross_dataset_summary(result["accuracy"], extra), extra_test_sets=extra)
    write_json(metrics, {"mix": mix, "seed": seed, **result})
