#!/usr/bin/env python
"""Stage seg_train: one segmentation model (smp) on one mix with one seed; best epoch by val mIoU."""

from pathlib import Path

from synthmix.atomic import read_json, write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device, set_threads
from synthmix.params import load_params
from synthmix.segmentation.data import load_pairs_arrays, read_pairs
from synthmix.segmentation.train import run_name, train_segmenter


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("mix")
    parser.add_argument("model")
    parser.add_argument("seed", type=int)
    parser.add_argument("--real", default="data/seg/real")
    parser.add_argument("--mixes-dir", default="data/seg/mixes")
    parser.add_argument("--models-dir", default="models/seg/runs")
    parser.add_argument("--metrics-dir", default="metrics/seg/train")
    args = parser.parse_args()
    params = load_params(args.params).seg_train
    set_threads(params.num_threads)
    info = read_json(f"{args.real}/classes.json")
    mix = read_pairs(Path(args.mixes_dir) / f"{args.mix}.jsonl")
    train = load_pairs_arrays(mix, info["image_size"])
    val = load_pairs_arrays(read_pairs(f"{args.real}/val.jsonl"), info["image_size"])
    run = run_name(args.mix, args.model, args.seed)
    result = train_segmenter(
        params, args.model, args.seed, train, val, len(info["classes"]), info["ignore_index"],
        Path(args.models_dir) / f"{run}.pt", pick_device(params.device),
        extra={"mix": args.mix, "synthetic_pairs": sum(r["source"] == "synthetic" for r in mix)},
    )
    history = result.pop("history")
    write_json(Path(args.metrics_dir) / f"{run}.json", result)
    write_json(Path(args.metrics_dir) / f"{run}-history.json", history)


if __name__ == "__main__":
    run_stage(main)
