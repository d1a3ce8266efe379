"""The label-map generator: a diffusers DDPM over reduced-resolution label maps.

Label maps are encoded as one grey channel (class ``k`` of ``K`` at level ``k*255/(K-1)``,
see :mod:`.postprocess`), downsampled with nearest-neighbour to
``seg_train_labels.resolution``. The model is the library's DDPM
(:mod:`synthmix.generators.ddpm`: diffusers ``UNet2DModel`` + ``DDPMScheduler``, EMA,
DPM-Solver++ sampling) trained with a single class and no label dropout and sampled with
guidance 1.0: the class embedding is then one learned constant, i.e. the model is
unconditional. Each map's starting noise comes from its own seed
``derive_seed("label-map", seed, index)``; the stage samples in aligned blocks and resumes map
by map (:mod:`synthmix.core.resume`), so a map does not depend on the resume point.

The model folder is the generator folder the DDPM writes, plus ``labels.json`` (the
segmentation classes and the encoding).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from synthmix.config import Params
from synthmix.core.atomic import building_dir, read_json, write_json
from synthmix.core.errors import MissingAssetError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.core.timings import write_timings
from synthmix.data.manifest import file_sha256, write_manifest
from synthmix.generators.ddpm import load_generator
from synthmix.generators.ddpm_training import train_ddpm
from synthmix.segmentation.data import load_mask, save_mask
from synthmix.segmentation.postprocess import encode_labels

if TYPE_CHECKING:
    from synthmix.config.sections.seg_generate_labels import SegGenerateLabelsParams
    from synthmix.config.sections.seg_train_labels import SegTrainLabelsParams

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
    with building_dir(out_dir) as tmp_model:
        maps = encoded_label_maps(records, len(classes), ignore_index, params.resolution)
        labels = torch.zeros(len(maps), dtype=torch.long)  # one class: the unconditional model's label
        info = train_ddpm(params, maps, labels, ["label_map"], "L", tmp_model, device=device)
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


def _sample_block(pipe, indices: Sequence[int], seed: int, steps: int) -> np.ndarray:
    seeds = [map_seed(seed, i) for i in indices]
    return pipe(class_ids=[0] * len(indices), seeds=seeds, num_inference_steps=steps, guidance_scale=1.0)[..., 0]


def sample_label_maps(
    model_dir: str | os.PathLike, indices: Sequence[int], seed: int, steps: int, batch_size: int,
    device: torch.device | None = None,
) -> np.ndarray:  # fmt: skip
    """Sampled grey label maps ``(N, r, r)`` uint8 for map ``indices`` (seeded per map)."""
    read_label_info(model_dir)
    pipe, _ = load_generator(model_dir, device)
    out = []
    for lo in tqdm(range(0, len(indices), batch_size), desc="sample label maps", unit="batch"):
        out.append(_sample_block(pipe, list(indices[lo : lo + batch_size]), seed, steps))
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.uint8)


def generate_label_maps(
    params: SegGenerateLabelsParams, model_dir: str | os.PathLike, image_size: int, out_dir: str | os.PathLike,
    device: torch.device | None = None, scratch_root: str | os.PathLike | None = None,
) -> dict:  # fmt: skip
    """Sample ``params.count`` label maps, post-process them and write ``out_dir`` (raw/, masks/,
    labels.jsonl), resumably: the work goes to a scratch folder keyed by the model weights, the
    params, the image size and the device type, map by map (raw map, then its mask, which marks
    it done); a re-run after a kill keeps the maps that decode and samples the rest in the same
    aligned blocks (:mod:`synthmix.core.resume`), so the files are those of an uninterrupted run. Returns
    the metrics record plus ``generated`` / ``reused`` / ``corrupt_regenerated`` / ``seconds``."""
    from synthmix.core.resume import blocks_to_run, image_ok, move_into_place, prune, run_key, scratch_dir
    from synthmix.segmentation.postprocess import Report, postprocess, structuring_element

    p, out_dir = params, Path(out_dir)
    device = torch.device("cpu") if device is None else torch.device(device)
    info = read_label_info(model_dir)
    n_classes, res = len(info["classes"]), int(info["resolution"])
    model_sha = file_sha256(Path(model_dir) / "unet" / "diffusion_pytorch_model.safetensors")
    key = run_key({"model": model_sha, "labels": info, "params": p.model_dump(), "image_size": image_size,
                   "device": device.type})  # fmt: skip
    root = Path(scratch_root) if scratch_root is not None else None
    scratch = scratch_dir(out_dir, "seg_generate_labels", key, root)
    scratch.mkdir(parents=True, exist_ok=True)
    raw_paths = [scratch / "raw" / f"{i:05d}.png" for i in range(p.count)]
    mask_paths = [scratch / "masks" / f"{i:05d}.png" for i in range(p.count)]
    done = [image_ok(r, (res, res), "L") and image_ok(m, (image_size, image_size), "L")
            for r, m in zip(raw_paths, mask_paths)]  # fmt: skip
    corrupt = sum(1 for d, m in zip(done, mask_paths) if not d and m.exists())
    reused = sum(done)
    blocks = blocks_to_run(p.count, p.batch_size, done)
    log.info("label maps in %s: %d finished ones reused, %d to sample%s", scratch, reused, p.count - reused,
             f" ({corrupt} unreadable leftovers)" if corrupt else "")
    element = structuring_element(p.structuring_element, p.element_size)

    def process(raw: np.ndarray) -> tuple[np.ndarray, Report]:
        return postprocess(raw, n_classes, image_size, p.ramp_tolerance, element, p.min_island_size, p.neighbourhood)

    start = time.perf_counter()
    if blocks:
        pipe, _ = load_generator(model_dir, device)
        for block in tqdm(blocks, desc="sample label maps", unit="batch"):
            for i, raw in zip(block, _sample_block(pipe, list(block), p.seed, p.steps)):
                if done[i]:  # recomputed only as a batch-mate: the finished files stay untouched
                    continue
                mask, _ = process(raw)
                save_mask(raw, raw_paths[i])
                save_mask(mask, mask_paths[i])  # last: a readable mask marks the map finished
    seconds = time.perf_counter() - start
    prune(scratch, raw_paths + mask_paths, ("raw", "masks"))

    total, records = Report(), []
    for i in tqdm(range(p.count), desc="post-processing report", unit="map", leave=False):
        # the report is recomputed from the stored raw map (post-processing is deterministic and cheap)
        mask, report = process(load_mask(raw_paths[i]))
        total.add(report)
        records.append({
            "path": str(mask_paths[i]), "label": "label_map", "source": "synthetic", "sha256": file_sha256(mask_paths[i]),
            "index": i, "seed": map_seed(p.seed, i), "raw": f"raw/{i:05d}.png",
            "generator": "label_ddpm", "steps": p.steps, "postprocess": report.as_dict(),
            "class_pixels": np.bincount(mask.ravel(), minlength=n_classes)[:n_classes].tolist(),
        })  # fmt: skip
    write_manifest(scratch / "labels.jsonl", records)
    superseded = move_into_place(scratch, out_dir)
    pixels = np.sum([r["class_pixels"] for r in records], axis=0)
    metrics = {
        "maps": len(records), "label_resolution": res, "image_size": image_size,
        **total.as_dict(), "islands_per_map": round(total.islands_removed / max(1, len(records)), 3),
        "class_share": {c: round(float(v) / max(1, pixels.sum()), 5) for c, v in zip(info["classes"], pixels)},
        "model_sha256": model_sha,
    }  # fmt: skip
    log.info("post-processing removed %d ramp pixels and %d islands (%d pixels) in %d maps",
             total.ramp_pixels, total.islands_removed, total.island_pixels, len(records))
    return {"metrics": metrics, "generated": p.count - reused, "reused": reused, "corrupt_regenerated": corrupt,
            "seconds": round(seconds, 2), "removed_scratch": superseded}


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
    ramp edges, upsample to the image size. Keeps each raw map beside its post-processed mask.

    Resumable map by map: an interrupted run leaves its finished maps in
    data/seg/.partial/seg_generate_labels-<hash> and the next run samples only the rest."""
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_class_info

    real = read_class_info(classes)
    result = generate_label_maps(params.seg_generate_labels, model, int(real["image_size"]), out,
                                 pick_device(params.device))  # fmt: skip
    write_json(metrics, result["metrics"])
    # how this run went (resume counts, seconds) differs between runs of the same inputs
    write_timings(metrics, {k: result[k] for k in ("generated", "reused", "corrupt_regenerated", "seconds")})
    print(f"{out}: {result['metrics']['maps']} label maps ({result['generated']} sampled, {result['reused']} reused)")
