"""seg_filter: FreeMask-style filtering and hardness-aware re-sampling of synthetic pairs
(Yang et al., NeurIPS 2023, "FreeMask: Synthetic Images with Dense Annotations Make Stronger
Segmentation Models").

A generated image need not follow its label map everywhere: SPADE may paint a road where the map
says building. FreeMask lets a segmenter trained on real data judge every synthetic pixel:

1. **Noise filtering**: a segmenter (``seg_filter.model``, trained on the real train split with
   :func:`synthmix.segmentation.train.train_segmenter`, best epoch by real val mIoU) gives each
   synthetic pixel its cross-entropy against the synthetic mask. A pixel whose loss exceeds
   ``tolerance_margin`` x the mean loss of its class (over the real train pixels, or over the
   synthetic ones with ``class_mean_from: synthetic``) becomes ``ignore_index`` in a new mask
   file: the image stays, the doubtful labels no longer teach anything.
2. **Hardness-aware re-sampling** (``resample``): a pair's hardness is the mean loss over its kept
   pixels; the pairs are drawn with replacement, seeded, with probability proportional to
   ``hardness ** hardness_power``, as many as there were, so hard (informative) masks come more
   often and easy ones less. The draw order is random, so the first N of the manifest (what a
   replacement mix takes) are a fair sample.

The filter is the authors' (LiheYoung/FreeMask ``preprocess/filter.py``: class-wise mean loss on
the real train images, margin 1.25). Their re-sampling differs in form: each real mask has 20
generated images, and a mask whose classes have a higher mean loss gets more of them (1 to 20, by
rank); here each synthetic map has one image, so hardness is measured per synthetic pair and
turned into draw probabilities.

With ``seg_filter.enabled: false`` every pair passes unchanged and nothing is trained: the graph is
the same either way and seg_mix always reads ``data/seg/filtered/pairs.jsonl``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from synthmix.config import Params
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.manifest import file_sha256
from synthmix.segmentation.data import save_mask

if TYPE_CHECKING:
    from synthmix.config.sections.seg_filter import SegFilterParams
    from synthmix.config.sections.seg_train import SegTrainParams

log = logging.getLogger(__name__)

NEW_IGNORE_COLOR = (255, 0, 255)  # pixels the filter ignored, in the preview (the ignore index is white)


@torch.no_grad()
def pixel_losses(model: torch.nn.Module, images: np.ndarray, masks: np.ndarray, ignore_index: int,
                 device: torch.device, batch_size: int = 32) -> Iterator[tuple[slice, np.ndarray]]:  # fmt: skip
    """Per-pixel cross-entropy of ``model`` against ``masks``, batch by batch: ``(slice, (B, H, W))``
    float32, 0 at ignored pixels. Batches keep memory bounded on large 512 px sets."""
    from synthmix.segmentation.train import to_input

    model.eval()
    for lo in range(0, len(images), batch_size):
        sl = slice(lo, min(len(images), lo + batch_size))
        x = torch.from_numpy(images[sl]).to(device)
        y = torch.from_numpy(masks[sl].astype(np.int64)).to(device)
        logits = model(to_input(x))
        loss = F.cross_entropy(logits.float(), y, ignore_index=ignore_index, reduction="none")
        yield sl, loss.cpu().numpy().astype(np.float32)


def class_mean_losses(batches: Iterator[tuple[slice, np.ndarray]], masks: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class's mean pixel loss ``(K,)`` (NaN for a class without pixels)."""
    total, count = np.zeros(n_classes, np.float64), np.zeros(n_classes, np.int64)
    for sl, loss in batches:
        m = masks[sl]
        valid = m < n_classes
        total += np.bincount(m[valid], weights=loss[valid], minlength=n_classes)[:n_classes]
        count += np.bincount(m[valid], minlength=n_classes)[:n_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def filter_pixels(mask: np.ndarray, loss: np.ndarray, class_means: np.ndarray, margin: float,
                  ignore_index: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(filtered mask, newly ignored bool)``: pixels of class c with loss > margin x mean(c) become
    ``ignore_index``; a class without a mean (no reference pixels) is kept whole."""
    k = len(class_means)
    valid = mask < k
    threshold = np.full(256, np.inf, np.float64)
    threshold[:k] = np.where(np.isfinite(class_means), margin * class_means, np.inf)
    noisy = valid & (loss > threshold[mask])
    out = mask.copy()
    out[noisy] = ignore_index
    return out, noisy


def hardness_of(filtered: np.ndarray, loss: np.ndarray, n_classes: int) -> float:
    """Mean loss over the kept (labelled) pixels of one pair; 0 when none is kept."""
    kept = filtered < n_classes
    return float(loss[kept].mean()) if kept.any() else 0.0


def resample_indices(hardness: Sequence[float], power: float, seed: int) -> np.ndarray:
    """``len(hardness)`` draws with replacement, P(i) proportional to ``hardness[i] ** power``
    (uniform if every weight is 0), in draw order."""
    h = np.asarray(hardness, np.float64)
    w = np.where(h > 0, h, 0.0) ** power if power else np.ones_like(h)
    w = np.where(np.isfinite(w), w, 0.0)
    prob = w / w.sum() if w.sum() > 0 else np.full(len(h), 1.0 / len(h))
    rng = np.random.default_rng(derive_seed("seg-filter-resample", int(seed)))
    return rng.choice(len(h), size=len(h), replace=True, p=prob)


def train_scorer(p: SegFilterParams, train_params: SegTrainParams, train: tuple[np.ndarray, np.ndarray],
                 val: tuple[np.ndarray, np.ndarray], n_classes: int, ignore_index: int,
                 device: torch.device) -> tuple[torch.nn.Module, dict]:  # fmt: skip
    """The scoring segmenter: seg_train's recipe for ``p.epochs`` epochs on the real train split."""
    from synthmix.segmentation.train import load_segmenter, train_segmenter

    params = train_params.model_copy(update={"epochs": p.epochs})
    with tempfile.TemporaryDirectory(prefix="seg-filter-") as tmp:
        info = train_segmenter(params, p.model, p.seed, train, val, n_classes, ignore_index, Path(tmp) / "scorer", device)
        model, _ = load_segmenter(Path(tmp) / "scorer", device, stage="seg_filter")
    return model, info


def freemask(
    p: SegFilterParams, records: Sequence[dict], synthetic: tuple[np.ndarray, np.ndarray],
    real_train: tuple[np.ndarray, np.ndarray] | None, classes: Sequence[str], ignore_index: int, out_dir: Path,
    model: torch.nn.Module, device: torch.device | str = "cpu", batch_size: int = 32,
) -> tuple[list[dict], dict, list[tuple[int, np.ndarray]]]:  # fmt: skip
    """Filter and re-sample the synthetic pairs ``records`` (their ``synthetic`` arrays) with the
    scoring ``model``; new masks go to ``out_dir/masks/``. Returns the output records, the
    statistics and ``(pair position, newly ignored bool)`` for the pairs with ignored pixels."""
    device = torch.device(device)
    images, masks = synthetic
    k = len(classes)
    if p.class_mean_from == "real":
        if real_train is None:
            raise DataError("seg_filter.class_mean_from = real needs the real train pairs")
        means = class_mean_losses(pixel_losses(model, *real_train, ignore_index, device, batch_size), real_train[1], k)
    else:
        means = class_mean_losses(pixel_losses(model, images, masks, ignore_index, device, batch_size), masks, k)
    out, hardness, ignored = [], [], []
    per_class = np.zeros(k, np.int64)
    for sl, losses in pixel_losses(model, images, masks, ignore_index, device, batch_size):
        for j, loss in zip(range(sl.start, sl.stop), losses):
            filtered, noisy = filter_pixels(masks[j], loss, means, p.tolerance_margin, ignore_index)
            rec = dict(records[j])
            n_noisy = int(noisy.sum())
            if n_noisy:
                per_class += np.bincount(masks[j][noisy], minlength=k)[:k]
                path = out_dir / "masks" / f"{rec.get('index', j):05d}.png"
                save_mask(filtered, path)
                # the original mask relative to the manifest's folder, like every path in it
                unfiltered = Path(os.path.relpath(Path(records[j]["mask"]).resolve(), Path(out_dir).resolve())).as_posix()
                rec.update(mask=str(path.resolve()), mask_sha256=file_sha256(path), unfiltered_mask=unfiltered)
                ignored.append((j, noisy))
            hardness.append(hardness_of(filtered, loss, k))
            rec["freemask"] = {"ignored_pixels": n_noisy, "hardness": round(hardness[-1], 6)}
            out.append(rec)
    copies = np.ones(len(out), np.int64)
    if p.resample and out:
        draws = resample_indices(hardness, p.hardness_power, p.seed)
        copies = np.bincount(draws, minlength=len(out))
        out = [dict(out[i], freemask={**out[i]["freemask"], "copies": int(copies[i])}) for i in draws]
    labelled = int((masks < k).sum())
    h = np.asarray(hardness) if hardness else np.zeros(1)
    stats = {
        "enabled": True, "pairs_in": len(records), "pairs_out": len(out),
        "pixels_ignored": int(per_class.sum()),
        "pixel_share_ignored": round(float(per_class.sum()) / max(1, labelled), 6),
        "pairs_affected": len(ignored),
        "ignored_per_class": {c: int(v) for c, v in zip(classes, per_class)},
        "class_mean_loss": {c: None if not np.isfinite(v) else round(float(v), 6) for c, v in zip(classes, means)},
        "class_mean_from": p.class_mean_from, "tolerance_margin": p.tolerance_margin,
        "hardness": {"mean": round(float(h.mean()), 6), "min": round(float(h.min()), 6), "max": round(float(h.max()), 6)},
        "resample": {
            "enabled": p.resample, "hardness_power": p.hardness_power,
            "unique_pairs": int((copies > 0).sum()), "never_drawn": int((copies == 0).sum()),
            "max_copies": int(copies.max()) if len(copies) else 0,
            "copies_histogram": {str(c): int(n) for c, n in enumerate(np.bincount(copies)) if n},
            "most_copied": [{"index": records[int(i)].get("index", int(i)), "copies": int(copies[i]),
                             "hardness": round(hardness[int(i)], 6)}
                            for i in np.argsort(-copies, kind="stable")[:10] if copies[i] > 1],
        },
    }  # fmt: skip
    return out, stats, ignored


def write_preview(images: np.ndarray, masks: np.ndarray, ignored: Sequence[tuple[int, np.ndarray]], count: int,
            colors: Sequence[Sequence[int]], ignore_index: int, path: str | os.PathLike, tile: int = 128) -> None:
    """A PNG, one row per pair: image | mask | filtered mask with the ignored pixels in magenta.
    The pairs with the most ignored pixels are shown (the first pairs when nothing was ignored)."""
    from synthmix.core.atomic import save_image
    from synthmix.segmentation.metrics import colorize

    shown = sorted(ignored, key=lambda t: (-int(t[1].sum()), t[0]))[:count]
    if not shown:
        shown = [(j, np.zeros(masks.shape[1:], bool)) for j in range(min(count, len(masks)))]
    rows = []
    for j, noisy in shown:
        filtered = colorize(np.where(noisy, ignore_index, masks[j]).astype(np.uint8), colors)
        filtered[noisy] = NEW_IGNORE_COLOR
        rows.append(np.concatenate([images[j], colorize(masks[j], colors), filtered], axis=1))
    grid = np.concatenate(rows, axis=0) if rows else np.zeros((8, 24, 3), np.uint8)
    scale = max(1, tile // max(1, masks.shape[1]))
    big = Image.fromarray(grid, mode="RGB").resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    save_image(big, path, compress_level=6)


def seg_filter_stage(params: Params, *, synthetic: Input, real: Input, val: Input, classes: Input, out: Output,
                     metrics: Output, preview: Output) -> None:  # fmt: skip
    """Stage seg_filter: FreeMask noise filtering and hardness-aware re-sampling of the synthetic
    pairs (seg_filter.enabled; off = every pair passes unchanged, nothing is trained)."""
    from synthmix.core.atomic import building_dir, write_json
    from synthmix.core.device import pick_device
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import load_pairs_arrays, read_pairs, write_pairs

    p = params.seg_filter
    info = read_class_info(classes)
    names, ignore_index, size = info["classes"], info["ignore_index"], info["image_size"]
    records = read_pairs(synthetic)
    arrays = load_pairs_arrays(records, size)
    device = pick_device(params.device)
    timings: dict = {}
    with building_dir(out) as tmp:
        if p.enabled:
            start = time.perf_counter()
            real_train = load_pairs_arrays(read_pairs(real), size)
            model, scorer = train_scorer(p, params.seg_train, real_train, load_pairs_arrays(read_pairs(val), size),
                                         len(names), ignore_index, device)  # fmt: skip
            timings["train_seconds"] = scorer["train_seconds"]
            kept, stats, ignored = freemask(p, records, arrays, real_train, names, ignore_index, tmp, model, device)
            stats["scorer"] = {"model": p.model, "epochs": p.epochs, "best_epoch": scorer["best_epoch"],
                               "val_miou": scorer["val_miou"]}  # fmt: skip
            timings["seconds"] = round(time.perf_counter() - start, 2)
        else:
            kept, ignored = [dict(r) for r in records], []
            stats = {"enabled": False, "pairs_in": len(records), "pairs_out": len(records), "pixels_ignored": 0,
                     "pairs_affected": 0}  # fmt: skip
        write_pairs(tmp / "pairs.jsonl", kept)
    write_preview(*arrays, ignored, p.preview_count, info["colors"], ignore_index, preview)
    write_json(metrics, stats)
    if timings:  # differs between runs of the same inputs: kept out of dvc.lock's hashes
        write_timings(metrics, timings)
    print(f"seg_filter: {stats['pairs_out']} pairs ({stats['pixels_ignored']} pixels ignored in "
          f"{stats['pairs_affected']} pairs{', re-sampled by hardness' if p.enabled and p.resample else ''})")

