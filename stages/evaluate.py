#!/usr/bin/env python
"""Stage evaluate: accuracy, per-class accuracy and confusion matrix of one run on the real test split,
and, with evaluate.extra_test_sets, the accuracy on each extra real test set and their average."""

from pathlib import Path

from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.crossdata import cross_dataset_summary
from synthmix.evaluation import evaluate_classifier, evaluate_extra_sets
from synthmix.manifest import read_manifest
from synthmix.params import load_params


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("mix", help="mix name, e.g. pct60")
    parser.add_argument("seed", type=int, help="training seed")
    parser.add_argument("--test", default="data/real/test.jsonl")
    parser.add_argument("--models-dir", default="models/cls")
    parser.add_argument("--metrics-dir", default="metrics/cls")
    parser.add_argument("--predictions-dir", default="metrics/predictions")
    args = parser.parse_args()
    params = load_params(args.params)
    run = f"{args.mix}-seed{args.seed}"
    result = evaluate_classifier(
        Path(args.models_dir) / f"{run}.pt",
        read_manifest(args.test),
        Path(args.predictions_dir) / f"{run}.csv",
        batch_size=params.evaluate.batch_size,
        device=params.train.device,
    )
    extra_sets = params.evaluate.extra_test_sets
    if extra_sets:  # cross-dataset evaluation: accuracy per extra real test set and the average
        extra = evaluate_extra_sets(Path(args.models_dir) / f"{run}.pt", list(extra_sets),
                                    batch_size=params.evaluate.batch_size, device=params.train.device)
        result.update(cross_dataset_summary(result["accuracy"], extra), extra_test_sets=extra)
    write_json(Path(args.metrics_dir) / f"{run}.json", {"mix": args.mix, "seed": args.seed, **result})


if __name__ == "__main__":
    run_stage(main)
