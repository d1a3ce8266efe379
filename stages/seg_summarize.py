#!/usr/bin/env python
"""Stage seg_summarize: model x mix -> mIoU (mean, interval across seeds) as JSON, Markdown and plot data."""

import csv
import io
from pathlib import Path

from synthmix.atomic import read_json, write_json, write_text
from synthmix.cli import run_stage, stage_parser
from synthmix.params import load_params
from synthmix.segmentation.summary import exp_metrics, markdown, plot_rows, summarize_seg
from synthmix.segmentation.train import run_name


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--real", default="data/seg/real")
    parser.add_argument("--metrics-dir", default="metrics/seg/eval")
    parser.add_argument("--out", default="metrics/seg/summary.json")
    parser.add_argument("--details", default="metrics/seg/summary_details.json")
    parser.add_argument("--table", default="metrics/seg/summary.md")
    parser.add_argument("--plot-data", default="metrics/seg/miou.csv")
    args = parser.parse_args()
    params = load_params(args.params)
    mixes, models, seeds = params.seg_mix.names, params.seg_train.models, params.seg_train.seeds
    classes = read_json(f"{args.real}/classes.json")["classes"]
    runs = {(m, a, s): read_json(Path(args.metrics_dir) / f"{run_name(m, a, s)}.json")
            for m in mixes for a in models for s in seeds}  # fmt: skip
    summary = summarize_seg(runs, mixes, models, seeds, params.seg_summarize.baseline,
                            params.seg_summarize.confidence, classes)  # fmt: skip
    table = markdown(summary)
    write_json(args.out, exp_metrics(summary))
    write_json(args.details, summary)
    write_text(args.table, table)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["model", "mix", "miou_mean"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(plot_rows(summary))
    write_text(args.plot_data, buf.getvalue())
    print(table, end="")


if __name__ == "__main__":
    run_stage(main)
