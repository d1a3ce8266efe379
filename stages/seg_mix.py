#!/usr/bin/env python
"""Stage seg_mix: one segmentation training mix (repN replaces N % of the real pairs, addN adds)."""

from synthmix.cli import run_stage, stage_parser
from synthmix.params import load_params
from synthmix.segmentation.data import read_pairs, write_pairs
from synthmix.segmentation.mixing import build_seg_mix


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("name", help="mix name, e.g. rep10 or add50")
    parser.add_argument("--real", default="data/seg/real/train.jsonl")
    parser.add_argument("--synthetic", default="data/seg/synthetic/pairs.jsonl")
    parser.add_argument("--out-dir", default="data/seg/mixes")
    args = parser.parse_args()
    params = load_params(args.params).seg_mix
    records = build_seg_mix(args.name, read_pairs(args.real), read_pairs(args.synthetic), params.seed)
    n = write_pairs(f"{args.out_dir}/{args.name}.jsonl", records)
    fake = sum(r["source"] == "synthetic" for r in records)
    print(f"seg_mix {args.name}: {n} pairs, {fake} synthetic")


if __name__ == "__main__":
    run_stage(main)
