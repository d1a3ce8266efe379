#!/usr/bin/env python
"""Stage train: train a classifier on one mix with one seed; keep the best epoch by val accuracy."""

from pathlib import Path

from synthmix.atomic import read_json, write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.manifest import read_manifest
from synthmix.params import load_params
from synthmix.training import train_classifier


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("mix", help="mix name, e.g. pct60")
    parser.add_argument("seed", type=int, help="training seed")
    parser.add_argument("--mixes-dir", default="data/mixes")
    parser.add_argument("--val", default="data/real/val.jsonl")
    parser.add_argument("--classes", default="data/real/classes.json")
    parser.add_argument("--models-dir", default="models/cls")
    parser.add_argument("--metrics-dir", default="metrics/train")
    args = parser.parse_args()
    params = load_params(args.params)
    run = f"{args.mix}-seed{args.seed}"
    result = train_classifier(
        params.train,
        seed=args.seed,
        train_records=read_manifest(Path(args.mixes_dir) / f"{args.mix}.jsonl"),
        val_records=read_manifest(args.val),
        classes=read_json(args.classes)["classes"],
        checkpoint=Path(args.models_dir) / f"{run}.pt",
    )
    history = result.pop("history")
    write_json(Path(args.metrics_dir) / f"{run}.json", {"mix": args.mix, "seed": args.seed, **result})
    write_json(Path(args.metrics_dir) / f"{run}-history.json", history)


if __name__ == "__main__":
    run_stage(main)
