#!/usr/bin/env python
"""Stage report: metrics/REPORT.md, a results section written from this run's metrics, with
contact sheets of the real and synthetic images, confusion matrices and training curves
(metrics/report/). Params: mix.names, train.seeds, summarize.baseline, report.
"""

from pathlib import Path

from synthmix.atomic import read_json
from synthmix.cli import run_stage, stage_parser
from synthmix.manifest import read_manifest
from synthmix.params import load_params
from synthmix.report import write_report


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--real", default="data/real/train.jsonl")
    parser.add_argument("--synthetic", default="data/qc/manifest.jsonl", help="the synthetic images the mixes use")
    parser.add_argument("--classes", default="data/real/classes.json")
    parser.add_argument("--metrics-dir", default="metrics")
    parser.add_argument("--out", default="metrics/REPORT.md")
    parser.add_argument("--image-dir", default="metrics/report")
    args = parser.parse_args()
    params = load_params(args.params)
    written = write_report(
        out=Path(args.out),
        image_dir=Path(args.image_dir),
        mixes=params.mix.names,
        seeds=params.train.seeds,
        baseline=params.summarize.baseline,
        classes=read_json(args.classes)["classes"],
        real=read_manifest(args.real),
        synthetic=read_manifest(args.synthetic),
        metrics_dir=Path(args.metrics_dir),
        sheet_per_class=params.report.sheet_per_class,
        seed=params.report.seed,
    )
    print(f"wrote {written['report']} with {len(written['figures'])} figures and "
          f"{1 + len(written['sheets']['synthetic'])} contact sheets")


if __name__ == "__main__":
    run_stage(main)
