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
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..atomic import read_json, write_json
from ..errors import MissingAssetError
from ..generators.ddpm import load_generator, train_ddpm
from ..manifest import file_sha256, write_manifest
from ..params import SegTrainLabelsParams, TrainGeneratorParams
from ..seeding import derive_seed
from .data import building_dir, load_mask
from .postprocess import encode_labels

log = logging.getLogger(__name__)

LABELS_JSON = "labels.json"
ENCODING = "grey-levels/1"


def downsample_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """Nearest-neighbour downsampling of an id mask to ``resolution`` x ``resolution``."""
    return np.asarray(Image.fromarray(mask, mode="L").resize((resolution, resolution), Image.Resampling.NEAREST))


def write_label_dataset(
    records: Sequence[dict], n_classes: int, ignore_index: int, resolution: int, out_dir: Path
) -> tuple[Path, Path]:
    """The encoded, downsampled training maps as grey PNGs + a one-class manifest for the DDPM."""
    rows = []
    for i, rec in enumerate(tqdm(records, desc="encode label maps", unit="map", leave=False)):
        grey = encode_labels(downsample_mask(load_mask(rec["mask"]), resolution), n_classes, ignore_index)
        path = out_dir / "maps" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grey, mode="L").save(path)
        rows.append({"path": str(path), "label": "label_map", "source": "real", "sha256": file_sha256(path)})
    manifest, classes = out_dir / "maps.jsonl", out_dir / "classes.json"
    write_manifest(manifest, rows)
    write_json(classes, {"classes": ["label_map"], "mode": "L"})
    return manifest, classes


def train_label_ddpm(
    params: SegTrainLabelsParams, records: Sequence[dict], classes: Sequence[str], ignore_index: int,
    out_dir: str | os.PathLike, device: torch.device | None = None,
) -> dict:  # fmt: skip
    """Train the label DDPM on the masks of ``records`` and write the model folder ``out_dir``."""
    ddpm_params = TrainGeneratorParams(**params.model_dump(), label_dropout=0.0)
    with building_dir(out_dir) as tmp_model:
        with tempfile.TemporaryDirectory(prefix="seg-label-maps-") as work:
            manifest, classes_json = write_label_dataset(records, len(classes), ignore_index, params.resolution, Path(work))
            info = train_ddpm(ddpm_params, manifest, classes_json, tmp_model, device=device)
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
