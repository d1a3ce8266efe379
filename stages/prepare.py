#!/usr/bin/env python
"""Stage prepare: select the real train/val/test splits (stratified, seeded) and write them as
PNGs with JSONL manifests and classes.json; the counts go to the metrics file."""
from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.params import load_params
from synthmix.prepare import prepare_real


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="data/real", help="output folder (default: data/real)")
    parser.add_argument("--metrics", default="metrics/prepare.json", help="metrics JSON (default: metrics/prepare.json)")
    args = parser.parse_args()
    params = load_params(args.params)
    stats = prepare_real(params.prepare, args.out)
    write_json(args.metrics, stats)


if __name__ == "__main__":
    run_stage(main)
