#!/usr/bin/env python
"""Stage seg_prepare: real image/mask pairs (offline Fashion-MNIST scenes or your folder pairs),
split train / val / test, written to data/seg/real."""

from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.params import load_params
from synthmix.segmentation.prepare import prepare_segmentation


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="data/seg/real")
    parser.add_argument("--metrics", default="metrics/seg/prepare.json")
    args = parser.parse_args()
    params = load_params(args.params).seg_prepare
    stats = prepare_segmentation(params, args.out)
    write_json(args.metrics, stats)
    print(f"seg_prepare: {stats['pairs']} pairs in {args.out}")


if __name__ == "__main__":
    run_stage(main)
