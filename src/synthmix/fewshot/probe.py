"""Stages fewshot_features and fewshot_train: a linear probe per method on a frozen backbone."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.fewshot.subsets import REAL, VARIANT_METHODS

if TYPE_CHECKING:
    from synthmix.config import Params
    from synthmix.config.sections.fewshot import FewshotParams

log = logging.getLogger(__name__)


class FeatureBank:
    """A frozen timm backbone and the features of every image it has seen, computed once."""

    def __init__(self, clf, classes: Sequence[str], device: torch.device):
        from synthmix.classify.models import build_model, freeze_backbone, normalisation

        self.params, self.classes, self.device = clf, list(classes), device
        self.model = build_model(clf.arch, len(classes), clf.weights).to(device).to(memory_format=torch.channels_last)
        freeze_backbone(self.model)
        self.model.eval()
        mean, std = normalisation(self.model, clf.weights)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def embed(self, records: list[dict], desc: str, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of ``records``; ``flip``: of their horizontal mirror images."""
        from synthmix.classify.models import embed_images
        from synthmix.core.device import autocast_dtype
        from synthmix.data.images import load_images

        x, y = load_images(records, self.classes, self.params.input_size, desc)
        if flip:
            x = x.flip(-1)
        return embed_images(self.model, x, self.mean, self.std, self.device, 256, autocast_dtype(self.device)), y

    def head(self) -> torch.nn.Module:
        """A fresh copy of the model's classifier head (its own init, seeded by the caller)."""
        import copy

        head = copy.deepcopy(self.model.get_classifier())
        for m in head.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return head.train()


FEATURES_FORMAT = "synthmix-fewshot-features/1"


def classifier_key(clf) -> dict:
    """What decides the features of an image: backbone, weights, input size."""
    return {"arch": clf.arch, "weights": clf.weights, "input_size": clf.input_size}


def features_stage(params: Params, *, val: Input, test: Input, classes: Input, out: Output) -> None:
    """Stage fewshot_features: the frozen backbone's features of the real validation and test
    splits, computed once for every (shot, trial) run (safetensors + meta.json)."""
    from synthmix.core.checkpoint import save_checkpoint
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    clf = params.fewshot.classifier
    class_list = read_classes(classes)
    bank = FeatureBank(clf, class_list, pick_device(params.device))
    f_val, y_val = bank.embed(read_manifest(val), "val")
    f_test, y_test = bank.embed(read_manifest(test), "test")
    save_checkpoint(out, {"val_features": f_val.cpu(), "val_labels": y_val, "test_features": f_test.cpu(),
                          "test_labels": y_test},
                    {"format": FEATURES_FORMAT, "classes": class_list, **classifier_key(clf)})
    print(f"{out}: features of {len(y_val)} val and {len(y_test)} test images ({clf.arch}, {f_test.shape[1]}-d)")


def load_features(folder: Path, clf, classes: Sequence[str]) -> dict:
    """The fewshot_features folder, checked against the classifier settings and classes."""
    from synthmix.core.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(folder, FEATURES_FORMAT, "fewshot_features")
    if {k: meta.get(k) for k in classifier_key(clf)} != classifier_key(clf) or meta.get("classes") != list(classes):
        raise DataError(f"{folder} was computed for {({k: meta.get(k) for k in classifier_key(clf)})} and classes "
                        f"{meta.get('classes')}, not for fewshot.classifier {classifier_key(clf)}: run dvc repro "
                        "fewshot_features")
    return tensors


def swap_table(n_real: int, real_sha: Sequence[str], variants: Sequence[dict]) -> list[list[int]]:
    """For each real image, the rows (in ``variants``) of its own variants."""
    rows: dict[str, list[int]] = {s: [] for s in real_sha}
    for i, v in enumerate(variants):
        if v.get("source_sha256") in rows:
            rows[v["source_sha256"]].append(i)
    table = [rows[s] for s in real_sha]
    missing = sum(not t for t in table)
    if missing:
        raise DataError(f"{missing} of {n_real} real images have no variant: re-run fewshot_variants")
    return table


def draw_epoch(samples: int, alpha: float, trial: int, epoch: int, n_real: int):
    """One epoch's draws, seeded by (trial, epoch), the same for every method: which of the
    ``n_real`` images each sample is (uniform, with replacement), whether it is mirrored, whether
    it is swapped (probability ``alpha``) and a uniform number that picks the variant
    (:func:`swap_rows`)."""
    gen = torch.Generator().manual_seed(derive_seed("fewshot-epoch", trial, epoch))
    idx = torch.randint(0, n_real, (samples,), generator=gen)
    use_swap = torch.rand(samples, generator=gen) < alpha
    pick = torch.rand(samples, generator=gen)
    flip = torch.rand(samples, generator=gen) < 0.5
    return idx, flip, use_swap, pick


def swap_rows(table: list[list[int]], idx: torch.Tensor, use_swap: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """The variant row of each swapped sample (uniform among its image's variants), -1 if kept."""
    counts = torch.tensor([len(t) for t in table])
    offsets = torch.tensor(np.cumsum([0] + [len(t) for t in table])[:-1])
    flat = torch.tensor([i for t in table for i in t])
    rows = flat[offsets[idx] + (pick * counts[idx]).long().clamp(max=counts[idx] - 1)]
    return torch.where(use_swap, rows, torch.full_like(rows, -1))


def train_probe(p: FewshotParams, trial: int, method: str, f_real: torch.Tensor, f_real_flip: torch.Tensor | None,
                y_real: torch.Tensor, f_var: torch.Tensor | None, f_var_flip: torch.Tensor | None,
                table: list[list[int]] | None, make_head) -> tuple[torch.nn.Module, dict]:
    """Train a linear head on cached features; see the module docstring for the schedule."""
    from synthmix.classify.train import make_optimizer

    clf = p.classifier
    torch.manual_seed(derive_seed("fewshot-head", trial, method))
    head = make_head()
    opt = make_optimizer(clf, head)
    n = len(y_real)
    swap = table is not None and method != "baseline"
    swapped_total = seen = 0
    for epoch in range(1, clf.epochs + 1):
        idx, flip, use_swap, pick = draw_epoch(p.samples_per_epoch, p.alpha, trial, epoch, n)
        feats = f_real[idx].clone()
        if clf.augment:
            feats[flip] = f_real_flip[idx[flip]]
        if swap:
            rows = swap_rows(table, idx, use_swap, pick)
            hit = rows >= 0
            var = f_var[rows[hit]]
            if clf.augment:
                var = torch.where(flip[hit, None], f_var_flip[rows[hit]], var)
            feats[hit] = var
            swapped_total += int(hit.sum())
        labels = y_real[idx]
        for s in range(0, p.samples_per_epoch, clf.batch_size):
            loss = F.cross_entropy(head(feats[s : s + clf.batch_size]), labels[s : s + clf.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seen += p.samples_per_epoch
    head.eval()
    return head, {"swap_rate": round(swapped_total / seen, 6) if swap else 0.0, "final_loss": round(loss.item(), 6)}


def scores(head: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict:
    from synthmix.classify.evaluate import classification_scores

    with torch.no_grad():
        pred = head(feats).argmax(1).cpu()
    s = classification_scores(labels, pred, list(classes))
    return {"accuracy": round(s["accuracy"], 6), "mean_per_class_accuracy": round(s["mean_per_class_accuracy"], 6),
            "per_class_accuracy": s["per_class_accuracy"]}


def train_stage(params: Params, shot: int, trial: int, *, variants: Input, features: Input,
                classes: Input, metrics: Output) -> None:
    """Stage fewshot_train: per method, a linear probe on the (shot, trial) subset (and its
    variants), scored on the real test split (accuracy, mean per-class accuracy)."""
    from synthmix.core.atomic import write_json
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    p = params.fewshot
    if not p.classifier.freeze_backbone:
        raise ParamsError("fewshot.classifier.freeze_backbone must be true: the few-shot protocol trains a linear "
                          "probe on a frozen pretrained backbone (DA-Fusion's setting)")
    device = pick_device(params.device)
    class_list = read_classes(classes)
    variants = Path(variants)
    real = read_manifest(variants / REAL)
    bank = FeatureBank(p.classifier, class_list, device)
    f_real, y_real = bank.embed(real, "real subset")
    f_real_flip = bank.embed(real, "real subset, flipped", flip=True)[0] if p.classifier.augment else None
    cached = load_features(Path(features), p.classifier, class_list)
    f_val, y_val = cached["val_features"].to(device), cached["val_labels"]
    f_test, y_test = cached["test_features"].to(device), cached["test_labels"]
    result: dict[str, Any] = {"shot": shot, "trial": trial, "n_real": len(real), "n_test": len(y_test),
                              "arch": p.classifier.arch, "methods": {}}
    for method in p.methods:
        f_var = f_var_flip = table = None
        n_var = 0
        if method in VARIANT_METHODS:
            manifest = variants / method / "manifest.jsonl"
            if not manifest.is_file():
                raise DataError(f"{manifest} is missing: re-run dvc repro fewshot_variants")
            recs = read_manifest(manifest)
            f_var, y_var = bank.embed(recs, f"{method} variants")
            if p.classifier.augment:
                f_var_flip = bank.embed(recs, f"{method} variants, flipped", flip=True)[0]
            table = swap_table(len(real), [r["sha256"] for r in real], recs)
            n_var = len(recs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 1280 x C head: thread hand-offs cost more than the maths (10x measured)
        try:
            head, info = train_probe(p, trial, method, f_real, f_real_flip, y_real, f_var, f_var_flip, table,
                                     bank.head)
        finally:
            torch.set_num_threads(threads)
        result["methods"][method] = {**scores(head, f_test, y_test, class_list),
                                     "val_accuracy": scores(head, f_val, y_val, class_list)["accuracy"],
                                     "n_variants": n_var, **info}
        log.info("k=%d trial %d %s: test accuracy %.4f", shot, trial, method, result["methods"][method]["accuracy"])
    write_json(metrics, result)
    print(f"{metrics}: " + ", ".join(f"{m} {r['accuracy']:.4f}" for m, r in result["methods"].items()))


