"""Classifier training on a mix manifest, keeping the epoch with the best validation accuracy.

Images are decoded, converted to 3 channels and bicubic-resized to ``train.input_size`` once,
then held in memory as one uint8 tensor: the sets in these studies are small, and nothing is
decoded again after the first pass (see the README's Benchmarks for what that saves).

The network is any timm model (``train.arch``), from random init or from local weights
(``train.weights``: a weights file, or ``offline_imagenet``, the ImageNet EfficientNet-Lite0
installed by ``make setup``). ``train.freeze_backbone`` trains only the classifier head (a
linear probe, DA-Fusion's setting) with the backbone in eval mode; without augmentation each
image's features are then computed once and the head trains on the cached features.

Swap mixes (``lrrN`` / ``grrN``, see :mod:`synthmix.mixes`) list real images and swap
candidates; every epoch, each real sample is replaced with probability N/100 by one of its
candidates, drawn from a generator seeded by (training seed, epoch).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthmix.classify.models import (
    CHECKPOINT_FORMAT,
    build_model,
    embed,
    embed_images,
    freeze_backbone,
    normalisation,
    predict,
    to_input,
)
from synthmix.config import Params
from synthmix.core.checkpoint import save_checkpoint
from synthmix.core.device import autocast_dtype, pick_device
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed, seed_everything
from synthmix.data.images import load_images
from synthmix.mixes import split_swap_mix

if TYPE_CHECKING:
    from synthmix.config.sections.train import TrainParams

log = logging.getLogger(__name__)























def random_crop_flip(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Pad-and-crop by up to size/8 pixels plus horizontal flip, per image (CIFAR-style)."""
    n, _, h, w = batch.shape
    pad = max(1, h // 8)
    padded = F.pad(batch, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).tolist()
    flip = torch.rand(n, generator=gen).lt(0.5).tolist()
    out = torch.empty_like(batch)
    for i in range(n):
        crop = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out




def make_optimizer(params: TrainParams, model: torch.nn.Module) -> torch.optim.Optimizer:
    if params.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    if params.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=params.lr, momentum=0.9, weight_decay=params.weight_decay)


def train_classifier(
    params: TrainParams,
    seed: int,
    train_records: list[dict],
    val_records: list[dict],
    classes: list[str],
    checkpoint: Path,
    device: str = "auto",
    on_epoch: Optional[Callable[[dict], None]] = None,
    mix: Optional[str] = None,
    cache_features: bool = True,
) -> dict:
    """Train, keep the best epoch by validation accuracy, save it atomically as the checkpoint
    folder ``checkpoint`` (see :mod:`synthmix.core.checkpoint`); return metrics.

    ``on_epoch`` receives each epoch's row of the returned ``history`` (epoch, train_loss,
    train_accuracy, val_accuracy, seconds; swap_rate for swap mixes) as soon as the epoch ends.
    ``mix`` is the mix name: a swap mix's (lrrN / grrN) ``role: candidate`` records are swapped in
    per draw instead of being trained on as samples. ``cache_features`` (frozen backbone, no
    augmentation) computes each image's features once; False runs the frozen backbone per batch
    (the same result up to float rounding; for the benchmark).
    """
    device = pick_device(device)
    dtype = autocast_dtype(device)
    seed_everything(derive_seed("train", seed))
    # The test split never enters here: selection uses the validation split only.
    samples, candidates, plan = split_swap_mix(mix, train_records)
    n_samples = len(samples)
    # swap candidates are decoded with the samples: rows n_samples.. of x_train
    x_train, y_train = load_images(samples + candidates, classes, params.input_size, "loading train")
    x_val, y_val = load_images(val_records, classes, params.input_size, "loading val")
    missing = [c for i, c in enumerate(classes) if not (y_train[:n_samples] == i).any()]
    if missing:
        raise DataError(f"the training mix has no images of classes {missing}")

    model = build_model(params.arch, len(classes), params.weights).to(device)
    model = model.to(memory_format=torch.channels_last)
    head = freeze_backbone(model) if params.freeze_backbone else None
    optimizer = make_optimizer(params, head if head is not None else model)
    mean_t, std_t = normalisation(model, params.weights)
    mean = torch.tensor(mean_t, device=device).view(1, 3, 1, 1)
    std = torch.tensor(std_t, device=device).view(1, 3, 1, 1)
    y_train_dev = y_train.to(device)
    gen = torch.Generator().manual_seed(derive_seed("shuffle", seed))

    history, best_acc, best_state, best_epoch = [], -1.0, None, 0
    start = time.perf_counter()
    cached = head is not None and not params.augment and cache_features
    if cached:  # a linear probe on a fixed backbone: every image's features once, the head on them
        f_train = embed_images(model, x_train, mean, std, device, 512, dtype)
        f_val = embed_images(model, x_val, mean, std, device, 512, dtype)
    else:
        x_train_dev = x_train.to(device)
    feature_seconds = time.perf_counter() - start
    seen, swapped_total = 0, 0
    for epoch in range(1, params.epochs + 1):
        model.train()
        if head is not None:  # frozen backbone: batch-norm statistics and dropout stay as they are
            model.eval()
            head.train()
        order = torch.randperm(n_samples, generator=gen)
        if plan is not None:  # this epoch's swaps, then the shuffled order over the drawn rows
            drawn = torch.from_numpy(plan.draw(seed, epoch))
            rows = torch.arange(n_samples)
            swapped = drawn >= 0
            rows[swapped] = n_samples + drawn[swapped]
            swapped_total += int(swapped.sum())
            order = rows[order]
        order = order.to(device)
        total_loss, correct = 0.0, 0
        bar = tqdm(range(0, len(order), params.batch_size), desc=f"epoch {epoch}/{params.epochs}", leave=False)
        for s in bar:
            idx = order[s : s + params.batch_size]
            yb = y_train_dev[idx]
            if cached:
                logits = head(f_train[idx])
                loss = F.cross_entropy(logits, yb)
            else:
                xb = x_train_dev[idx]
                if params.augment:
                    xb = random_crop_flip(xb.cpu(), gen).to(device)
                xb = to_input(xb, mean, std)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    if head is not None:
                        with torch.no_grad():
                            feats = embed(model, xb)
                        logits = head(feats)
                    else:
                        logits = model(xb)
                    loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
        if cached:
            with torch.no_grad():
                head.eval()
                val_pred = head(f_val).argmax(1).cpu()
        else:
            val_pred = predict(model, x_val, mean, std, device, 512, dtype)
        val_acc = (val_pred == y_val).float().mean().item()
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "train_accuracy": correct / len(order),
            "val_accuracy": val_acc,
            "seconds": time.perf_counter() - start,
        }
        if plan is not None:
            row["swap_rate"] = int(swapped.sum()) / n_samples
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        log.info("epoch %d: loss %.4f, train acc %.4f, val acc %.4f", epoch, row["train_loss"], row["train_accuracy"], val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    elapsed = time.perf_counter() - start

    save_checkpoint(checkpoint, best_state, {
        "format": CHECKPOINT_FORMAT,
        "arch": params.arch,
        "classes": list(classes),
        "input_size": params.input_size,
        "mean": list(mean_t),
        "std": list(std_t),
        "best_epoch": best_epoch,
        "val_accuracy": best_acc,
    })
    n_synth = sum(r["source"] == "synthetic" for r in samples)
    result = {
        "best_epoch": best_epoch,
        "best_val_accuracy": best_acc,
        "n_train": n_samples,
        "n_train_synthetic": n_synth,
        "n_val": len(val_records),
        "train_seconds": round(elapsed, 2),
        "train_images_per_second": round(seen / elapsed, 1) if elapsed > 0 else None,
        "device": str(device),
    }
    if head is not None:
        result.update(feature_cache=cached, feature_seconds=round(feature_seconds, 2) if cached else None)
    if plan is not None:  # swap mixes: candidates, nominal and realised swap share of all draws
        result.update(n_swap_candidates=len(candidates), swap_probability=plan.probability,
                      swap_coverage=round(plan.coverage, 6),
                      swap_rate=round(swapped_total / (n_samples * params.epochs), 6))
    return {**result, "history": history}




# train_classifier's fields that describe the run (time, speed, device), not the classifier
RUN_FIELDS = ("train_seconds", "train_images_per_second", "feature_seconds", "device")


def train_stage(params: Params, mix: str, seed: int, *, mix_manifest: Input, val: Input, classes: Input,
                checkpoint: Output, metrics: Output, plots: Output) -> None:
    """Stage train: train a classifier on one mix with one seed; keep the best epoch by val accuracy.

    ``metrics`` and ``plots`` are a DVCLive folder's ``metrics.json`` (the run's summary: mix, seed,
    best epoch, sizes, and the last epoch's values) and ``plots/metrics`` (one TSV per
    per-epoch value: train_loss, train_accuracy, val_accuracy; step = epoch). Seconds, images/s and
    the device differ between runs of the same inputs, so they go to the timings file
    (core.timings: metrics/timings/train/<run>.json), which no stage declares."""
    from synthmix.core.live import live_metrics, log_epoch
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    with live_metrics(metrics, plots) as live:
        live.summary.update(mix=mix, seed=seed)
        result = train_classifier(
            params.train,
            seed=seed,
            train_records=read_manifest(mix_manifest),
            val_records=read_manifest(val),
            classes=read_classes(classes),
            checkpoint=checkpoint,
            device=params.device,
            on_epoch=lambda row: log_epoch(live, {k: v for k, v in row.items() if k != "seconds"}),
            mix=mix,
        )
        history = result.pop("history")
        run = {k: result.pop(k) for k in RUN_FIELDS if k in result}
        run["epoch_seconds"] = [round(r["seconds"], 2) for r in history]
        write_timings(metrics, run)
        live.summary.update(result)
