"""seg_train / seg_evaluate: segmentation networks trained on a mix, scored on real test.

The source study's real-time pair in plain PyTorch, BiSeNet V2 and PP-LiteSeg
(:mod:`synthmix.segmentation.networks`), randomly initialised offline or with a local backbone
weights file (``seg_train.backbone_weights``); their auxiliary heads (BiSeNet V2's booster,
PP-LiteSeg's 1/16 and 1/32 heads) add their cross-entropy with weight 1 in training, as both
papers do, and are not used at inference. smp ``Linknet`` / ``FPN`` / ... on
``seg_train.encoder`` remain available. Cross-entropy with the ignore index, AdamW, random
horizontal flips, and the epoch with the best validation mIoU is kept. Inputs use the
ImageNet mean / std that ImageNet-initialised backbones expect.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synthmix.config import Params
from synthmix.core.checkpoint import load_checkpoint, load_state, save_checkpoint
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed, seed_everything
from synthmix.segmentation.metrics import IoUMeter
from synthmix.segmentation.models import build_model

if TYPE_CHECKING:
    from synthmix.config.sections.seg_train import SegTrainParams

log = logging.getLogger(__name__)

FORMAT = "synthmix-seg/2"  # /1 was a torch pickle, no longer read
AUX_WEIGHT = 1.0  # each auxiliary head's loss weight (BiSeNet V2's booster, PP-LiteSeg's coef [1, 1, 1])
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> normalised float ``(B, 3, H, W)``."""
    return (images.permute(0, 3, 1, 2).float() / 255 - MEAN.to(images.device)) / STD.to(images.device)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Class ids ``(N, H, W)`` for uint8 images ``(N, H, W, 3)``."""
    model.eval()
    out = []
    for lo in range(0, len(images), batch_size):
        out.append(model(to_input(images[lo : lo + batch_size].to(device))).argmax(1).cpu())
    return torch.cat(out).to(torch.uint8)


def seg_loss(out, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Cross-entropy of the main logits, plus ``AUX_WEIGHT`` x that of each auxiliary output
    when ``out`` is a training-mode ``(logits, [aux, ...])`` pair."""
    logits, aux = out if isinstance(out, tuple) else (out, [])
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index)
    for a in aux:
        loss = loss + AUX_WEIGHT * F.cross_entropy(a, target, ignore_index=ignore_index)
    return loss


def score(model, images, masks, n_classes, ignore_index, device, batch_size) -> dict:
    meter = IoUMeter(n_classes, ignore_index)
    meter.update(predict(model, images, device, batch_size), masks)
    return meter.compute()


def train_segmenter(
    params: SegTrainParams, model_name: str, seed: int, train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray], n_classes: int, ignore_index: int, checkpoint: str | os.PathLike,
    device: torch.device, extra: dict | None = None, on_epoch: Callable[[dict], None] | None = None,
) -> dict:  # fmt: skip
    """Train one model on ``train`` (images, masks), keep the best epoch by val mIoU, save it as the
    checkpoint folder ``checkpoint`` (see :mod:`synthmix.core.checkpoint`).

    ``on_epoch`` receives each epoch's row of the returned ``history`` (epoch, train_loss,
    val_miou) as soon as the epoch ends.
    """
    from tqdm.auto import tqdm

    x_tr, y_tr = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    x_va, y_va = torch.from_numpy(val[0]), torch.from_numpy(val[1])
    if len(x_tr) == 0:
        raise DataError("the training mix holds no pairs")
    seed_everything(derive_seed("seg-train", model_name, seed) % 2**31)
    model = build_model(model_name, params.encoder, params.encoder_weights, n_classes,
                        params.backbone_weights).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params.epochs)
    g = torch.Generator().manual_seed(derive_seed("seg-batches", seed))
    best, best_state, history = -1.0, None, []
    start = time.perf_counter()
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(x_tr), generator=g)
        losses = []
        bar = tqdm(range(0, len(order), params.batch_size), desc=f"{model_name} epoch {epoch}/{params.epochs}",
                   unit="batch", leave=False)  # fmt: skip
        for lo in bar:
            idx = order[lo : lo + params.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x, y = x_tr[idx], y_tr[idx].long()
            if params.augment:
                flip = torch.rand(len(idx), generator=g) < 0.5
                x[flip], y[flip] = x[flip].flip(2), y[flip].flip(2)
            loss = seg_loss(model(to_input(x.to(device))), y.to(device), ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()
        val_scores = score(model, x_va, y_va, n_classes, ignore_index, device, 64)
        history.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5),
                        "val_miou": round(val_scores["miou"], 5)})  # fmt: skip
        if on_epoch is not None:
            on_epoch(history[-1])
        log.info("%s seed %d epoch %d: loss %.4f, val mIoU %.4f", model_name, seed, epoch, history[-1]["train_loss"], val_scores["miou"])
        if val_scores["miou"] > best:
            best = val_scores["miou"]
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_epoch = epoch
    seconds = time.perf_counter() - start
    # the checkpoint holds what the inputs determine; the training time goes to the metrics only
    record = {
        "model": model_name, "encoder": params.encoder, "encoder_weights": params.encoder_weights,
        "backbone_weights": params.backbone_weights,
        "seed": seed, "best_epoch": best_epoch, "val_miou": round(best, 6), "train_pairs": len(x_tr),
        **(extra or {}),
    }  # fmt: skip
    save_checkpoint(checkpoint, best_state, {"format": FORMAT, "n_classes": n_classes, "ignore_index": ignore_index,
                                             **record})  # fmt: skip
    return {**record, "train_seconds": round(seconds, 2), "history": history}


def load_segmenter(checkpoint: str | os.PathLike, device: torch.device,
                   stage: str = "seg_train") -> tuple[torch.nn.Module, dict]:
    """A trained segmentation model and its metadata from a checkpoint folder written by
    :func:`train_segmenter`; ``stage`` (the stage that writes it) is named in errors."""
    tensors, meta = load_checkpoint(checkpoint, FORMAT, stage)
    model = build_model(meta["model"], meta["encoder"], None, meta["n_classes"])
    load_state(model, tensors, checkpoint, stage)
    return model.to(device).eval(), meta


def run_name(mix: str, model: str, seed: int) -> str:
    return f"{mix}-{model}-seed{seed}"


__all__: Sequence[str] = ["build_model", "load_segmenter", "predict", "run_name", "score", "train_segmenter"]


def seg_train_stage(params: Params, mix: str, model: str, seed: int, *, mix_manifest: Input, val: Input,
                    classes: Input, checkpoint: Output, metrics: Output, plots: Output) -> None:
    """Stage seg_train: train one segmentation model on one mix with one seed (best epoch by val mIoU).

    ``metrics`` and ``plots`` are a DVCLive folder's ``metrics.json`` (the run's summary, the best
    epoch's mIoU as ``best_val_miou``, and the last epoch's values) and ``plots/metrics`` (train_loss
    and val_miou per epoch; step = epoch)."""
    from synthmix.core.device import pick_device
    from synthmix.core.live import live_metrics, log_epoch
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import load_pairs_arrays, read_pairs

    p = params.seg_train
    info = read_class_info(classes)
    pairs = read_pairs(mix_manifest)
    train = load_pairs_arrays(pairs, info["image_size"])
    val_arrays = load_pairs_arrays(read_pairs(val), info["image_size"])
    with live_metrics(metrics, plots) as live:
        result = train_segmenter(
            p, model, seed, train, val_arrays, len(info["classes"]), info["ignore_index"], Path(checkpoint),
            pick_device(params.device), extra={"mix": mix, "synthetic_pairs": sum(r["source"] == "synthetic" for r in pairs)},
            on_epoch=lambda row: log_epoch(live, row),
        )
        result.pop("history")
        # the checkpoint's val_miou (best epoch) is best_val_miou here: val_miou is the last epoch's
        result["best_val_miou"] = result.pop("val_miou")
        # seconds differ between runs of the same inputs: kept out of dvc.lock's hashes
        write_timings(metrics, {"train_seconds": result.pop("train_seconds")})
        live.summary.update(result)


def seg_evaluate_stage(params: Params, mix: str, model: str, seed: int, *, checkpoint: Input, test: Input,
                       classes: Input, metrics: Output, overlay: Output) -> None:
    """Stage seg_evaluate: mIoU and per-class IoU of one trained model on the real test split, and an
    overlay picture (image | true mask | predicted mask | prediction over the image)."""
    from synthmix.core.atomic import write_json
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import load_pairs_arrays, read_pairs
    from synthmix.segmentation.metrics import iou_scores, overlay_grid

    p = params.seg_evaluate
    info = read_class_info(classes)
    device = pick_device(params.device)
    net, state = load_segmenter(checkpoint, device, stage=f"seg_train@{mix}-{model}-{seed}")
    images, masks = load_pairs_arrays(read_pairs(test), info["image_size"])
    pred = predict(net, torch.from_numpy(images), device, p.batch_size)
    meter = IoUMeter(len(info["classes"]), info["ignore_index"])
    meter.update(pred, torch.from_numpy(masks))
    scores = meter.compute()
    # each test image's own mIoU: the summary pairs them image by image with the baseline mix
    per_image = [round(iou_scores(pred[i], torch.from_numpy(masks[i]), len(info["classes"]),
                                  info["ignore_index"])["miou"], 6) for i in range(len(images))]
    write_json(metrics, {
        "mix": mix, "model": model, "seed": seed, "miou": round(scores["miou"], 6),
        "pixel_accuracy": round(scores["pixel_accuracy"], 6),
        "iou": [None if v is None else round(v, 6) for v in scores["iou"]],
        "iou_per_class": {c: None if v is None else round(v, 6) for c, v in zip(info["classes"], scores["iou"])},
        "n_test": len(images), "train_pairs": state["train_pairs"], "synthetic_pairs": state.get("synthetic_pairs"),
        "per_image_miou": per_image,
    })  # fmt: skip
    n = min(p.overlay_count, len(images))
    overlay_grid(images[:n], masks[:n], pred[:n].numpy(), info["colors"], overlay)
    print(f"{run_name(mix, model, seed)}: mIoU {100 * scores['miou']:.2f} %")
