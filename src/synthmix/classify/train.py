"""Classifier training on a mix manifest, keeping the epoch with the best validation accuracy.

Images are decoded, converted to 3 channels and bicubic-resized to ``train.input_size`` once,
then held in memory as one uint8 tensor: the sets in these studies are small, and slicing a
tensor beats a DataLoader of PIL images by a wide margin on CPU and GPU alike.
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

from synthmix.config.classify import TrainParams
from synthmix.core.atomic import atomic_open
from synthmix.core.device import autocast_dtype, pick_device, set_threads
from synthmix.core.errors import DataError, MissingAssetError
from synthmix.core.seeding import derive_seed, seed_everything
from synthmix.data.images import load_rgb
from synthmix.config import Params
from synthmix.core.stage import Input, Output

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PLAIN_MEAN, PLAIN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


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


def build_model(arch: str, num_classes: int, pretrained: bool) -> torch.nn.Module:
    import torchvision

    if arch != "resnet18":
        raise DataError(f"train.arch = {arch!r} is not supported (allowed: resnet18)")
    if not pretrained:
        return torchvision.models.resnet18(weights=None, num_classes=num_classes)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    try:
        model = torchvision.models.resnet18(weights=weights)
    except Exception as exc:  # URLError, SSL, timeout, corrupt download...
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise MissingAssetError(
            f"train.pretrained = true needs torchvision's ImageNet ResNet-18 weights, which could not "
            f"be loaded ({type(exc).__name__}: {exc}). Place {Path(weights.url).name} in {hub} "
            "(or run once with network access), or set train.pretrained: false"
        ) from exc
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    return model


def normalisation(pretrained: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (IMAGENET_MEAN, IMAGENET_STD) if pretrained else (PLAIN_MEAN, PLAIN_STD)


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
) -> dict:
    """Train, keep the best epoch by validation accuracy, save it atomically; return metrics.

    ``on_epoch`` receives each epoch's row of the returned ``history`` (epoch, train_loss,
    train_accuracy, val_accuracy, seconds) as soon as the epoch ends.
    """
    set_threads(params.num_threads)
    device = pick_device(device)
    dtype = autocast_dtype(device)
    seed_everything(derive_seed("train", seed))
    # The test split never enters here: selection uses the validation split only.
    x_train, y_train = load_images(train_records, classes, params.input_size, "loading train")
    x_val, y_val = load_images(val_records, classes, params.input_size, "loading val")
    missing = [c for i, c in enumerate(classes) if not (y_train == i).any()]
    if missing:
        raise DataError(f"the training mix has no images of classes {missing}")

    model = build_model(params.arch, len(classes), params.pretrained).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(params, model)
    mean_t, std_t = normalisation(params.pretrained)
    mean = torch.tensor(mean_t, device=device).view(1, 3, 1, 1)
    std = torch.tensor(std_t, device=device).view(1, 3, 1, 1)
    x_train_dev, y_train_dev = x_train.to(device), y_train.to(device)
    gen = torch.Generator().manual_seed(derive_seed("shuffle", seed))

    history, best_acc, best_state, best_epoch = [], -1.0, None, 0
    start = time.perf_counter()
    seen = 0
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=gen).to(device)
        total_loss, correct = 0.0, 0
        bar = tqdm(range(0, len(order), params.batch_size), desc=f"epoch {epoch}/{params.epochs}", leave=False)
        for s in bar:
            idx = order[s : s + params.batch_size]
            xb = x_train_dev[idx]
            if params.augment:
                xb = random_crop_flip(xb.cpu(), gen).to(device)
            xb, yb = to_input(xb, mean, std), y_train_dev[idx]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
        val_pred = predict(model, x_val, mean, std, device, 512, dtype)
        val_acc = (val_pred == y_val).float().mean().item()
        row = {
            "epoch": epoch,
            "train_loss": total_loss / len(order),
            "train_accuracy": correct / len(order),
            "val_accuracy": val_acc,
            "seconds": time.perf_counter() - start,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        log.info("epoch %d: loss %.4f, train acc %.4f, val acc %.4f", epoch, row["train_loss"], row["train_accuracy"], val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    elapsed = time.perf_counter() - start

    with atomic_open(checkpoint, "wb") as fh:
        torch.save(
            {
                "state_dict": best_state,
                "arch": params.arch,
                "classes": classes,
                "input_size": params.input_size,
                "mean": mean_t,
                "std": std_t,
                "best_epoch": best_epoch,
                "val_accuracy": best_acc,
            },
            fh,
        )
    n_synth = sum(r["source"] == "synthetic" for r in train_records)
    return {
        "best_epoch": best_epoch,
        "best_val_accuracy": best_acc,
        "n_train": len(train_records),
        "n_train_synthetic": n_synth,
        "n_val": len(val_records),
        "train_seconds": round(elapsed, 2),
        "train_images_per_second": round(seen / elapsed, 1) if elapsed > 0 else None,
        "device": str(device),
        "history": history,
    }


def load_classifier(checkpoint: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """A trained classifier and its checkpoint metadata."""
    import torchvision

    if not Path(checkpoint).is_file():
        raise DataError(f"checkpoint {checkpoint} does not exist: run the train stage first (dvc repro)")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = torchvision.models.resnet18(weights=None, num_classes=len(ckpt["classes"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).to(memory_format=torch.channels_last), ckpt


def train_stage(params: Params, mix: str, seed: int, *, mix_manifest: Input, val: Input, classes: Input,
                checkpoint: Output, metrics: Output, plots: Output) -> None:
    """Stage train: train a classifier on one mix with one seed; keep the best epoch by val accuracy.

    ``metrics`` and ``plots`` are a DVCLive folder's ``metrics.json`` (the run's summary: mix, seed,
    best epoch, sizes, timing, and the last epoch's values) and ``plots/metrics`` (one TSV per
    per-epoch value: train_loss, train_accuracy, val_accuracy, seconds; step = epoch)."""
    from synthmix.core.live import live_metrics, log_epoch
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
            on_epoch=lambda row: log_epoch(live, row),
        )
        result.pop("history")
        live.summary.update(result)
