#!/usr/bin/env python
"""Stage summarize: accuracy per mix over training seeds, tests against the baseline mix,
a Markdown table, plot data for DVC and a PNG plot of accuracy vs synthetic share.

Reads metrics/cls/<mix>-seed<S>.json and metrics/predictions/<mix>-seed<S>.csv for every
mix in mix.names and seed in train.seeds; params: mix.names, train.seeds, summarize.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from synthmix.atomic import write_json, write_text
from synthmix.cli import run_stage, stage_parser
from synthmix.errors import DataError
from synthmix.params import load_params
from synthmix.summary import exp_metrics, markdown_table, plot, rounded, summarize, write_plot_data

log = logging.getLogger("synthmix.summarize")


def read_run_metrics(metrics_dir: Path, mix: str, seed: int) -> dict:
    path = metrics_dir / f"{mix}-seed{seed}.json"
    if not path.is_file():
        raise DataError(
            f"{path} is missing: run the evaluate stage for mix {mix}, seed {seed} first (e.g. `dvc repro`)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): re-run the evaluate stage for it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if ("mix" in data and data["mix"] != mix) or ("seed" in data and data["seed"] != seed):
        raise DataError(
            f"{path} says mix {data.get('mix')!r} seed {data.get('seed')!r}, its name says {mix} seed {seed}"
        )
    return {**data, "mix": mix, "seed": seed, "_source": str(path)}


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--metrics-dir", default="metrics/cls", help="per-run metrics JSON files")
    parser.add_argument("--predictions-dir", default="metrics/predictions", help="per-run predictions CSV files")
    parser.add_argument("--out", default="metrics/summary.json", help="summary metrics (dvc exp show)")
    parser.add_argument("--details", default="metrics/summary_details.json", help="intervals, tests, per-class accuracy")
    parser.add_argument("--table", default="metrics/summary.md", help="Markdown table")
    parser.add_argument("--plot-data", default="metrics/accuracy_vs_fake.csv", help="DVC plot data (.csv or .json)")
    parser.add_argument("--png", default="metrics/accuracy_vs_fake.png", help="accuracy vs fake share plot")
    args = parser.parse_args()
    params = load_params(args.params)

    mixes = list(params.mix.names)
    seeds = list(params.train.seeds)
    metrics_dir, pred_dir = Path(args.metrics_dir), Path(args.predictions_dir)
    runs, predictions = [], {}
    for mix in mixes:
        for seed in seeds:
            runs.append(read_run_metrics(metrics_dir, mix, seed))
            pred = pred_dir / f"{mix}-seed{seed}.csv"
            if not pred.is_file():
                raise DataError(
                    f"{pred} is missing: run the evaluate stage for mix {mix}, seed {seed} first (e.g. `dvc repro`)"
                )
            predictions[(mix, seed)] = pred
    log.info("summarizing %d mixes x %d seeds against %s", len(mixes), len(seeds), params.summarize.baseline)

    summary = summarize(
        runs, predictions, mixes, params.summarize.baseline, params.summarize.confidence, seeds=seeds
    )
    table = markdown_table(summary)
    write_json(args.out, exp_metrics(summary))
    write_json(args.details, rounded(summary))
    write_text(args.table, table)
    write_plot_data(summary, args.plot_data)
    plot(summary, args.png)
    print(table, end="")
    log.info("wrote %s, %s, %s, %s, %s", args.out, args.details, args.table, args.plot_data, args.png)


if __name__ == "__main__":
    run_stage(main)
