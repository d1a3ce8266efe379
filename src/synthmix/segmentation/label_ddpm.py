"""The label-map generator: a diffusers DDPM over reduced-resolution label maps.

Label maps are encoded as one grey channel (class ``k`` of ``K`` at level ``k*255/(K-1)``,
see :mod:`.postprocess`), downsampled with nearest-neighbour to
``seg_train_labels.resolution``. The model is the library's DDPM
(:mod:`synthmix.generators.ddpm`: diffusers ``UNet2DModel`` + ``DDPMScheduler``, EMA,
DPM-Solver++ sampling) trained with a single class and no label dropout and sampled with
guidance 1.0: the class embedding is then one learned constant, i.e. the model is
unconditional. Each map's starting noise comes from its own seed
``derive_seed("label-map", seed, index)``, so a map does not depend on batch size or
resume point.

The model folder is the generator folder the DDPM writes, plus ``labels.json`` (the
segmentation classes and the encoding).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from synthmix.config.generation import TrainGeneratorParams
from synthmix.config.segmentation import SegTrainLabelsParams
from synthmix.core.atomic import building_dir, read_json, write_json
from synthmix.core.errors import MissingAssetError
from synthmix.core.seeding import derive_seed
from synthmix.generators.ddpm import load_generator
from synthmix.generators.ddpm_training import train_ddpm
from synthmix.segmentation.data import load_mask
from synthmix.segmentation.postprocess import encode_labels
from synthmix.config import Params
from synthmix.data.manifest import file_sha256, write_manifest
from synthmix.core.stage import Input, Output
from synthmix.core.timings import write_timings

log = logging.getLogger(__name__)

LABELS_JSON = "labels.json"
ENCODING = "grey-levels/1"


def downsample_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """Nearest-neighbour downsampling of an id mask to ``resolution`` x ``resolution``."""
    return np.asarray(Image.fromarray(mask, mode="L").resize((resolution, resolution), Image.Resampling.NEAREST))


def encoded_label_maps(records: Sequence[dict], n_classes: int, ignore_index: int, resolution: int) -> torch.Tensor:
    """The training masks, downsampled and encoded as grey levels: uint8 ``(N, 1, r, r)``."""
    maps = [encode_labels(downsample_mask(load_mask(rec["mask"]), resolution), n_classes, ignore_index)
            for rec in tqdm(records, desc="encode label maps", unit="map", leave=False)]
    return torch.from_numpy(np.stack(maps)[:, None]).contiguous()


def train_label_ddpm(
    params: SegTrainLabelsParams, records: Sequence[dict], classes: Sequence[str], ignore_index: int,
    out_dir: str | os.PathLike, device: torch.device | None = None,
) -> dict:  # fmt: skip
    """Train the label DDPM on the masks of ``records`` and write the model folder ``out_dir``."""
    ddpm_params = TrainGeneratorParams(**params.model_dump(), label_dropout=0.0, checkpoint_every=0)
    with building_dir(out_dir) as tmp_model:
        maps = encoded_label_maps(records, len(classes), ignore_index, params.resolution)
        labels = torch.zeros(len(maps), dtype=torch.long)  # one class: the unconditional model's label
        info = train_ddpm(ddpm_params, maps, labels, ["label_map"], "L", tmp_model, device=device)
        write_json(tmp_model / LABELS_JSON, {
            "encoding": ENCODING, "classes": list(classes), "ignore_index": ignore_index,
            "resolution": params.resolution, "train_maps": len(records),
        })  # fmt: skip
    return info


def read_label_info(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / LABELS_JSON
    if not path.is_file():
        raise MissingAssetError(
            f"{path} not found: {model_dir} is not a label DDPM folder; run the seg_train_labels stage "
            "(dvc repro seg_train_labels)"
        )
    info = read_json(path)
    if info.get("encoding") != ENCODING:
        raise MissingAssetError(f"{path}: unknown encoding {info.get('encoding')!r}; re-run seg_train_labels")
    return info


def map_seed(seed: int, index: int) -> int:
    return derive_seed("label-map", int(seed), int(index))


def sample_label_maps(
    model_dir: str | os.PathLike, indices: Sequence[int], seed: int, steps: int, batch_size: int,
    device: torch.device | None = None,
) -> np.ndarray:  # fmt: skip
    """Sampled grey label maps ``(N, r, r)`` uint8 for map ``indices`` (seeded per map)."""
    read_label_info(model_dir)
    pipe, _ = load_generator(model_dir, device)
    out = []
    for lo in tqdm(range(0, len(indices), batch_size), desc="sample label maps", unit="batch"):
        chunk = list(indices[lo : lo + batch_size])
        seeds = [map_seed(seed, i) for i in chunk]
        maps = pipe(class_ids=[0] * len(chunk), seeds=seeds, num_inference_steps=steps, guidance_scale=1.0)
        out.append(maps[..., 0])
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.uint8)


def seg_train_labels_stage(params: Params, *, train: Input, classes: Input, out: Output, metrics: Output) -> None:
    """Stage seg_train_labels: an unconditional DDPM on the real label maps (grey-level encoded)."""
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import read_pairs

    p = params.seg_train_labels
    info = read_class_info(classes)
    result = train_label_ddpm(p, read_pairs(train), info["classes"], info["ignore_index"], out, pick_device(params.device))
    keys = ("final_loss", "n_parameters", "train_images")
    write_json(metrics, {"steps": p.steps, "resolution": p.resolution, **{k: result[k] for k in keys}})
    # seconds and device differ between runs of the same inputs: kept out of dvc.lock's hashes
    write_timings(metrics, {k: result[k] for k in ("train_seconds", "images_per_s", "device")})


def seg_generate_labels_stage(params: Params, *, model: Input, classes: Input, out: Output, metrics: Output) -> None:
    """Stage seg_generate_labels: sample label maps with the label DDPM, remove label islands and
    ramp edges, upsample to the image size. Keeps each raw map beside its post-processed mask."""
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import save_mask
    from synthmix.segmentation.postprocess import Report, postprocess, structuring_element

    p = params.seg_generate_labels
    real = read_class_info(classes)
    info = read_label_info(model)
    n_classes, size = len(info["classes"]), int(real["image_size"])
    maps = sample_label_maps(model, range(p.count), p.seed, p.steps, p.batch_size, pick_device(params.device))
    element = structuring_element(p.structuring_element, p.element_size)
    total, records = Report(), []
    with building_dir(out) as tmp:
        for i, raw in enumerate(tqdm(maps, desc="post-process label maps", unit="map")):
            mask, report = postprocess(raw, n_classes, size, p.ramp_tolerance, element, p.min_island_size, p.neighbourhood)
            total.add(report)
            raw_path, mask_path = tmp / "raw" / f"{i:05d}.png", tmp / "masks" / f"{i:05d}.png"
            save_mask(raw, raw_path)
            save_mask(mask, mask_path)
            records.append({
                "path": str(mask_path), "label": "label_map", "source": "synthetic", "sha256": file_sha256(mask_path),
                "index": i, "seed": map_seed(p.seed, i), "raw": os.path.relpath(raw_path, tmp),
                "generator": "label_ddpm", "steps": p.steps, "postprocess": report.as_dict(),
                "class_pixels": np.bincount(mask.ravel(), minlength=n_classes)[:n_classes].tolist(),
            })  # fmt: skip
        write_manifest(tmp / "labels.jsonl", records)
    pixels = np.sum([r["class_pixels"] for r in records], axis=0)
    write_json(metrics, {
        "maps": len(records), "label_resolution": int(maps.shape[1]), "image_size": size,
        **total.as_dict(), "islands_per_map": round(total.islands_removed / max(1, len(records)), 3),
        "class_share": {c: round(float(v) / max(1, pixels.sum()), 5) for c, v in zip(info["classes"], pixels)},
        "model_sha256": file_sha256(Path(model) / "unet" / "diffusion_pytorch_model.safetensors"),
    })  # fmt: skip
    log.info("post-processing removed %d ramp pixels and %d islands (%d pixels) in %d maps",
             total.ramp_pixels, total.islands_removed, total.island_pixels, len(records))
