#!/usr/bin/env python
"""Stage seg_train_labels: an unconditional DDPM over the real training label maps (reduced resolution)."""

from synthmix.atomic import read_json, write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device
from synthmix.params import load_params
from synthmix.segmentation.data import read_pairs
from synthmix.segmentation.label_ddpm import train_label_ddpm


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--real", default="data/seg/real")
    parser.add_argument("--out", default="models/seg/label_ddpm")
    parser.add_argument("--metrics", default="metrics/seg/label_ddpm.json")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    params = load_params(args.params).seg_train_labels
    info = read_json(f"{args.real}/classes.json")
    records = read_pairs(f"{args.real}/train.jsonl")
    result = train_label_ddpm(params, records, info["classes"], info["ignore_index"], args.out, pick_device(args.device))
    keys = ("final_loss", "train_seconds", "images_per_s", "n_parameters", "train_images", "device")
    write_json(args.metrics, {"steps": params.steps, "resolution": params.resolution, **{k: result[k] for k in keys}})


if __name__ == "__main__":
    run_stage(main)
