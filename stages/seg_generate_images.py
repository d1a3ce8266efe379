#!/usr/bin/env python
"""Stage seg_generate_images: SPADE images for the post-processed synthetic label maps, written as
synthetic pairs (data/seg/synthetic/pairs.jsonl, masks pointing into data/seg/synthetic_labels)."""

import numpy as np
from tqdm import tqdm

from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device
from synthmix.manifest import file_sha256, read_manifest
from synthmix.params import load_params
from synthmix.segmentation.data import building_dir, load_mask, pair_record, save_rgb, write_pairs
from synthmix.segmentation.spade import image_seed_for, load_spade, render


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--labels", default="data/seg/synthetic_labels/labels.jsonl")
    parser.add_argument("--spade", default="models/seg/spade.pt")
    parser.add_argument("--out", default="data/seg/synthetic")
    parser.add_argument("--metrics", default="metrics/seg/generate_images.json")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    p = load_params(args.params).seg_generate_images
    labels = read_manifest(args.labels)
    g = load_spade(args.spade, pick_device(args.device))
    spade_hash = file_sha256(args.spade)
    records = []
    with building_dir(args.out) as tmp:
        for lo in tqdm(range(0, len(labels), p.batch_size), desc="SPADE images", unit="batch"):
            chunk = labels[lo : lo + p.batch_size]
            masks = np.stack([load_mask(r["path"]) for r in chunk])
            seeds = [image_seed_for(p.seed, r["index"]) for r in chunk]
            images = render(g, masks, seeds)
            for rec, image, seed in zip(chunk, images, seeds):
                path = tmp / "images" / f"{rec['index']:05d}.png"
                save_rgb(image, path)
                records.append((path, rec, seed))
        # tmp is a sibling of out, so paths relative to it stay valid after the rename
        pairs = [pair_record(path, rec["path"], "synthetic", generator="spade", spade_sha256=spade_hash,
                             seed=seed, label_seed=rec["seed"], index=rec["index"])  # fmt: skip
                 for path, rec, seed in records]
        write_pairs(tmp / "pairs.jsonl", pairs)
    write_json(args.metrics, {"pairs": len(pairs), "spade_sha256": spade_hash})


if __name__ == "__main__":
    run_stage(main)
