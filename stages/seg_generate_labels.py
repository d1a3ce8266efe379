#!/usr/bin/env python
"""Stage seg_generate_labels: sample label maps with the label DDPM (one seed per map), clean them
(ramp edges, label islands) and upsample them to the image size: data/seg/synthetic_labels."""

import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synthmix.atomic import read_json, write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device
from synthmix.manifest import file_sha256, write_manifest
from synthmix.params import load_params
from synthmix.segmentation.data import building_dir, save_mask
from synthmix.segmentation.label_ddpm import map_seed, read_label_info, sample_label_maps
from synthmix.segmentation.postprocess import Report, postprocess, structuring_element

log = logging.getLogger("synthmix.seg_generate_labels")


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", default="models/seg/label_ddpm")
    parser.add_argument("--real", default="data/seg/real")
    parser.add_argument("--out", default="data/seg/synthetic_labels")
    parser.add_argument("--metrics", default="metrics/seg/postprocess.json")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    p = load_params(args.params).seg_generate_labels
    real = read_json(f"{args.real}/classes.json")
    info = read_label_info(args.model)
    n_classes, size = len(info["classes"]), int(real["image_size"])
    maps = sample_label_maps(args.model, range(p.count), p.seed, p.steps, p.batch_size, pick_device(args.device))
    element = structuring_element(p.structuring_element, p.element_size)

    total, records = Report(), []
    with building_dir(args.out) as tmp:
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
    metrics = {
        "maps": len(records), "label_resolution": int(maps.shape[1]), "image_size": size,
        **total.as_dict(), "islands_per_map": round(total.islands_removed / max(1, len(records)), 3),
        "class_share": {c: round(float(v) / max(1, pixels.sum()), 5) for c, v in zip(info["classes"], pixels)},
        "model_sha256": file_sha256(Path(args.model) / "unet" / "diffusion_pytorch_model.safetensors"),
    }  # fmt: skip
    write_json(args.metrics, metrics)
    log.info("post-processing removed %d ramp pixels and %d islands (%d pixels) in %d maps",
             total.ramp_pixels, total.islands_removed, total.island_pixels, len(records))


if __name__ == "__main__":
    run_stage(main)
