#!/usr/bin/env python
"""Stage mix: write the manifest of one fake:real training mix (pctN or augN), copying no image."""

from pathlib import Path

from synthmix.atomic import read_json
from synthmix.cli import run_stage, stage_parser
from synthmix.manifest import count_by_label, read_manifest, write_manifest
from synthmix.mixing import build_mix
from synthmix.params import load_params


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("name", help="mix name, e.g. pct60 or aug100")
    parser.add_argument("--real", default="data/real/train.jsonl")
    parser.add_argument("--classes", default="data/real/classes.json")
    parser.add_argument("--synthetic", default="data/qc/manifest.jsonl", help="synthetic images kept by the qc stage")
    parser.add_argument("--out-dir", default="data/mixes")
    args = parser.parse_args()
    params = load_params(args.params)
    if args.name not in params.mix.names:
        parser.error(f"{args.name} is not one of mix.names {params.mix.names}")
    classes = read_json(args.classes)["classes"]
    records = build_mix(
        args.name,
        real=read_manifest(args.real),
        synthetic=read_manifest(args.synthetic),
        classes=classes,
        per_class=params.mix.per_class or params.prepare.train_per_class,
        seed=params.mix.seed,
    )
    write_manifest(Path(args.out_dir) / f"{args.name}.jsonl", records)
    print(f"{args.name}: {len(records)} images, per class {count_by_label(records)}")


if __name__ == "__main__":
    run_stage(main)
