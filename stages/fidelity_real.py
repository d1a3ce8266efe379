#!/usr/bin/env python
"""Stage fidelity_real: Inception-v3 pool3 features of the real train split, computed once.

Every experiment that changes only the synthetic set reuses them (DVC re-runs this stage
only when the real split or the feature settings change). Params: fidelity.weights,
fidelity.image_size, fidelity.max_per_class, fidelity.seed.
"""

import logging
import time

from synthmix.atomic import read_json
from synthmix.cli import run_stage, stage_parser
from synthmix.fidelity import compute_set_features, save_features, subsample
from synthmix.inception import resolve_weights
from synthmix.manifest import read_manifest
from synthmix.params import load_params

log = logging.getLogger("synthmix.fidelity_real")


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--real", default="data/real/train.jsonl")
    parser.add_argument("--classes", default="data/real/classes.json")
    parser.add_argument("--out", default="data/features/real_train.pt")
    args = parser.parse_args()
    params = load_params(args.params).fidelity
    classes = read_json(args.classes)["classes"]
    weights = resolve_weights(params.weights, params.download)
    log.info("Inception weights: %s (%s)", weights.path, weights.kind)
    records = subsample(read_manifest(args.real), params.max_per_class, params.seed, "real")
    start = time.perf_counter()
    feats = compute_set_features(records, classes, params, weights, "real train")
    seconds = time.perf_counter() - start
    save_features(args.out, feats)
    print(f"{args.out}: {len(records)} real images, {seconds:.1f} s ({len(records) / seconds:.1f} img/s)")


if __name__ == "__main__":
    run_stage(main)
