"""Evaluation of a trained classifier on the real test split."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import torch

from synthmix.classify.models import load_classifier, predict
from synthmix.config import Params
from synthmix.core.atomic import atomic_open
from synthmix.core.device import autocast_dtype, pick_device
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.data.images import load_images

log = logging.getLogger(__name__)


def classification_scores(actual: torch.Tensor, predicted: torch.Tensor, classes: list[str]) -> dict:
    """Accuracy, per-class accuracy (recall; None for a class with no actual image), mean per-class
    accuracy and the confusion matrix (rows actual, columns predicted), by torchmetrics.

    Mean per-class accuracy is balanced accuracy (DA-Fusion's metric, scikit-learn's
    ``balanced_accuracy_score``): the mean of the per-class recalls over the classes that have
    test images. torchmetrics' ``average="macro"`` would count a class with no test image but
    some predictions as 0, so the mean is taken here over the present classes."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix

    n = len(classes)
    cm = multiclass_confusion_matrix(predicted, actual, num_classes=n)
    accuracy = multiclass_accuracy(predicted, actual, num_classes=n, average="micro").item()
    recall = multiclass_accuracy(predicted, actual, num_classes=n, average="none")
    present = cm.sum(1) > 0
    return {
        "accuracy": accuracy,
        "mean_per_class_accuracy": recall[present].double().mean().item(),
        "per_class_accuracy": {c: round(recall[i].item(), 6) if present[i] else None for i, c in enumerate(classes)},
        "confusion_matrix": cm,
    }


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
    scores = classification_scores(y, pred, classes)
    accuracy = scores["accuracy"]
    base = Path(relative_to) if relative_to else Path.cwd()
    with atomic_open(predictions_csv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "actual", "predicted"])
        for rec, a, p in zip(test_records, y.tolist(), pred.tolist()):
            writer.writerow([Path(os.path.relpath(rec["path"], base)).as_posix(), classes[a], classes[p]])
    log.info("test accuracy %.4f on %d images", accuracy, len(y))
    return {
        "accuracy": round(accuracy, 6),
        "mean_per_class_accuracy": round(scores["mean_per_class_accuracy"], 6),
        "n_test": len(y),
        "per_class_accuracy": scores["per_class_accuracy"],
        "confusion_matrix": {"classes": classes, "rows_actual_cols_predicted": scores["confusion_matrix"].tolist()},
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
        scores = classification_scores(y, pred, classes)
        out[spec.name] = {
            "accuracy": round(scores["accuracy"], 6),
            "mean_per_class_accuracy": round(scores["mean_per_class_accuracy"], 6),
            "n_test": len(y),
            "per_class_accuracy": {c: a for c, a in scores["per_class_accuracy"].items() if a is not None},
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
