#!/usr/bin/env python
"""Stage fidelity: FID, KID, precision/recall (and Inception Score when the original weights
are there) of the synthetic set against the real train split, per class and overall.

Sets: "generated" (data/synthetic) and, with qc.enabled, "kept" (what quality control kept).
The real features come from the fidelity_real stage. Writes metrics/fidelity.json (for
`dvc exp show`), metrics/fidelity_details.json (per class, counts) and metrics/fidelity.md.
"""

import logging
import time

import numpy as np

from synthmix.atomic import read_json, write_json, write_text
from synthmix.cli import run_stage, stage_parser
from synthmix.fidelity import compute_set_features, exp_metrics, load_features, markdown, select, set_report, subsample
from synthmix.inception import resolve_weights
from synthmix.manifest import read_manifest
from synthmix.params import load_params

log = logging.getLogger("synthmix.fidelity")


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--real-features", default="data/features/real_train.pt")
    parser.add_argument("--classes", default="data/real/classes.json")
    parser.add_argument("--synthetic", default="data/synthetic/manifest.jsonl")
    parser.add_argument("--kept", default="data/qc/manifest.jsonl")
    parser.add_argument("--out", default="metrics/fidelity.json")
    parser.add_argument("--details", default="metrics/fidelity_details.json")
    parser.add_argument("--table", default="metrics/fidelity.md")
    args = parser.parse_args()
    all_params = load_params(args.params)
    params = all_params.fidelity
    classes = read_json(args.classes)["classes"]
    real = load_features(args.real_features)
    weights = resolve_weights(params.weights, params.download)
    if real["weights"] != weights.kind or real["image_size"] != params.image_size:
        log.warning("real features were computed with %s weights at %s px, synthetic ones use %s at %s px",
                    real["weights"], real["image_size"], weights.kind, params.image_size)

    # one seeded choice per pool name: when QC drops nothing, "kept" is exactly "generated"
    sets = {"generated": subsample(read_manifest(args.synthetic), params.max_per_class, params.seed, "synthetic")}
    if all_params.qc.enabled:
        sets["kept"] = subsample(read_manifest(args.kept), params.max_per_class, params.seed, "synthetic")
    union = {r["path"]: r for recs in sets.values() for r in recs}  # each image goes through Inception once
    start = time.perf_counter()
    feats = compute_set_features(list(union.values()), classes, params, weights, "synthetic")
    seconds = time.perf_counter() - start
    report = {
        "weights": weights.kind,
        "weights_file": weights.path.name,
        "image_size": params.image_size,
        "prc_neighborhood": params.prc_neighborhood,
        "max_per_class": params.max_per_class,
        "n_real": len(real["labels"]),
        "feature_seconds_synthetic": round(seconds, 2),
        "sets": {},
    }
    for name, recs in sets.items():
        log.info("set %s: %d images", name, len(recs))
        wanted = {r["path"] for r in recs}
        gen = select(feats, np.array([p in wanted for p in feats["paths"]]))
        report["sets"][name] = set_report(gen, real, classes, params)
    write_json(args.out, exp_metrics(report))
    write_json(args.details, report)
    table = markdown(report)
    write_text(args.table, table)
    print(table, end="")


if __name__ == "__main__":
    run_stage(main)
