#!/usr/bin/env python
"""Stage generate: sample generate.per_class synthetic images per class with the trained generator.

Resumable: an interrupted run leaves its finished images in data/.partial/generate-<hash>
and the next run generates only the missing ones. Several processes can share the work
(torchrun sets RANK and WORLD_SIZE); rank 0 writes the manifest once all images exist.
"""

import os

from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.generate import default_device_for_rank, generate_synthetic
from synthmix.params import load_params


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", default="models/generator", help="generator folder (train_generator)")
    parser.add_argument("--out", default="data/synthetic", help="output folder: images/ + manifest.jsonl")
    parser.add_argument("--metrics", default="metrics/generate.json")
    parser.add_argument("--scratch", default="data/.partial", help="where unfinished runs keep their images")
    args = parser.parse_args()
    params = load_params(args.params).generate
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    stats = generate_synthetic(
        params, args.model, args.out, device=default_device_for_rank(world_size),
        scratch_root=args.scratch, rank=rank, world_size=world_size,
    )
    if rank == 0:
        write_json(args.metrics, stats)
        print(f"{args.out}: {stats['total']} images ({stats['generated']} generated, {stats['reused']} reused)")


if __name__ == "__main__":
    run_stage(main)
