#!/usr/bin/env python
"""Stage seg_train_spade: the SPADE label-to-image GAN trained on the real training pairs."""

from synthmix.atomic import read_json, write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device
from synthmix.params import load_params
from synthmix.segmentation.data import load_pairs_arrays, read_pairs
from synthmix.segmentation.spade import train_spade


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--real", default="data/seg/real")
    parser.add_argument("--out", default="models/seg/spade.pt")
    parser.add_argument("--metrics", default="metrics/seg/spade.json")
    args = parser.parse_args()
    params = load_params(args.params).seg_train_spade
    info = read_json(f"{args.real}/classes.json")
    images, masks = load_pairs_arrays(read_pairs(f"{args.real}/train.jsonl"), info["image_size"])
    result = train_spade(params, images, masks, len(info["classes"]), args.out, pick_device(params.device))
    keys = ("final_losses", "train_seconds", "steps_per_s", "n_parameters_g", "n_parameters_d", "device")
    write_json(args.metrics, {"steps": params.steps, **{k: result[k] for k in keys}})
    write_json(args.metrics.replace(".json", "-history.json"), result["history"])


if __name__ == "__main__":
    run_stage(main)
