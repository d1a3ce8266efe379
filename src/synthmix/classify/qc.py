"""Quality control of a synthetic set before it is mixed with real images.

None of the source studies filters its generated images, but later work shows that
unfiltered synthetic data can hurt: images that do not show their class teach the wrong
label, and near-copies add no information (or copy a training image outright). With
``qc.enabled`` two filters run, in this order:

1. **wrong class**: a ResNet-18 trained on the real train split (best epoch by the real
   validation split, exactly as the ``train`` stage trains) scores every synthetic image;
   an image is dropped when the classifier gives *another* class a probability above
   ``qc.confidence``. Low-confidence disagreements are kept: the filter removes what is
   clearly wrong, not what is merely unusual.
2. **near-duplicates**, among the images still kept, in path order: ``phash`` compares
   perceptual hashes (``imagehash.phash`` with ``hash_size=16``: DCT of the 64 x 64 grey
   image, the lowest 16 x 16 frequencies against their median, 256 bits)
   by Hamming distance <= ``qc.phash_max_distance``; ``features`` compares the QC
   classifier's penultimate (512-d) features by cosine similarity >= ``qc.cosine_threshold``.
   The first image of a group is kept. With ``qc.against_real`` an image that near-copies a
   real training image is dropped too.

With ``qc.against_test`` the kept images are also compared with the real *test* split by pHash
(``qc.phash_max_distance``): a near-copy of a test image would inflate the test accuracy of a
mix that holds it. This is a leakage report only (``report.md``, ``n_near_test`` in the
metrics); nothing is dropped for it: which images a model trains on must not depend on the test split.

When ``qc.enabled`` is false every image passes (cheaply, no model is trained), so the
pipeline graph stays the same either way and ``mix`` always reads the QC manifest.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import imagehash
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from synthmix.classify.models import embed, load_classifier, to_input
from synthmix.classify.train import train_classifier
from synthmix.config import Params
from synthmix.config.classifier import ClassifierParams
from synthmix.core.device import pick_device
from synthmix.core.paths import Input, Output
from synthmix.data.images import load_images, load_rgb

if TYPE_CHECKING:
    from synthmix.config.sections.qc import QCParams

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- perceptual hash


def phash(image: Image.Image, hash_size: int = 16) -> np.ndarray:
    """``imagehash.phash`` (DCT perceptual hash: low frequencies > median) as packed bits.

    ``hash_size`` 16 (256 bits) rather than imagehash's 8: on 28-32 px images 64 bits cannot
    tell simple shapes apart (distinct Fashion-MNIST sneakers share 64-bit hashes, while
    their 256-bit hashes differ in 34+ bits; a 2-grey-level brightening changes at most 4).
    Packed (``hash_size**2 / 8`` uint8) so that :func:`hamming` compares whole sets at once.
    """
    return np.packbits(imagehash.phash(image, hash_size=hash_size).hash.flatten())


def phashes(records: list[dict], desc: str = "phash") -> np.ndarray:
    """Packed pHashes of ``records`` (N x 32 uint8)."""
    rows = [phash(load_rgb(r["path"])) for r in tqdm(records, desc=desc, unit="img", leave=False)]
    return np.stack(rows) if rows else np.zeros((0, 32), dtype=np.uint8)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)  # numpy < 2 has no bitwise_count


def hamming(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Pairwise Hamming distances between packed hashes ``a`` (N x B) and ``b`` (M x B): N x M."""
    out = np.empty((len(a), len(b)), dtype=np.int32)
    for start in range(0, len(a), chunk):
        x = np.bitwise_xor(a[start : start + chunk, None, :], b[None, :, :])
        out[start : start + chunk] = _POPCOUNT[x].sum(-1, dtype=np.int32)
    return out


# --------------------------------------------------------------------------- duplicate search


def near_duplicates(
    syn: np.ndarray, real: Optional[np.ndarray], candidates: list[int], kind: str, threshold: float
) -> dict[int, tuple[str, Optional[int], float]]:
    """Greedy near-duplicate search over ``candidates`` (indices into ``syn``, in order).

    ``kind`` "phash": ``syn``/``real`` are packed hashes (:func:`phashes`), duplicates have distance <= threshold;
    "features": rows are L2-normalised features, duplicates have cosine >= threshold. Returns
    {index: ("real" | "synthetic", index of the match, distance or similarity)} of the dropped.
    """

    def close(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kind == "phash":
            d = hamming(a, b)
            return d <= threshold, d.astype(float)
        s = a @ b.T
        return s >= threshold, s

    dropped: dict[int, tuple[str, Optional[int], float]] = {}
    if real is not None and len(real) and candidates:
        hit, score = close(syn[candidates], real)
        for row, i in enumerate(candidates):
            if hit[row].any():
                j = int(np.argmin(score[row]) if kind == "phash" else np.argmax(score[row]))
                dropped[i] = ("real", j, float(score[row, j]))
    remaining = [i for i in candidates if i not in dropped]
    if len(remaining) > 1:
        hit, score = close(syn[remaining], syn[remaining])
        kept_rows: list[int] = []
        for row, i in enumerate(remaining):
            earlier = [k for k in kept_rows if hit[row, k]]
            if earlier:
                k = earlier[0]
                dropped[i] = ("synthetic", remaining[k], float(score[row, k]))
            else:
                kept_rows.append(row)
    return dropped


# --------------------------------------------------------------------------- classifier


@torch.no_grad()
def probabilities_and_features(checkpoint: Path, records: list[dict], device: torch.device,
                               batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Softmax probabilities and L2-normalised penultimate features of ``records``."""
    model, ckpt = load_classifier(checkpoint, device, stage="qc")
    model.eval()
    classes = ckpt["classes"]
    x, _ = load_images(records, classes, ckpt["input_size"], "loading for qc")
    mean = torch.tensor(ckpt["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(ckpt["std"], device=device).view(1, 3, 1, 1)
    head = model.get_classifier()
    pooled: list[torch.Tensor] = []
    probs = []
    for start in tqdm(range(0, len(x), batch_size), desc="qc classifier", unit="batch", leave=False):
        feats = embed(model, to_input(x[start : start + batch_size].to(device), mean, std))
        pooled.append(feats.float().cpu())
        probs.append(head(feats).float().softmax(1).cpu())
    feats = torch.nn.functional.normalize(torch.cat(pooled), dim=1)
    return torch.cat(probs).numpy(), feats.numpy(), classes


def wrong_class(probs: np.ndarray, labels: np.ndarray, confidence: float) -> np.ndarray:
    """Indices whose top class is not their label and has probability above ``confidence``."""
    top = probs.argmax(1)
    return np.flatnonzero((top != labels) & (probs.max(1) > confidence))


def classifier_params(qc: QCParams) -> ClassifierParams:
    """The train-stage settings of the QC classifier: its own epochs/lr/size; a ResNet-18 (timm)
    from scratch, fully trained, with Adam, no weight decay and no augmentation."""
    return ClassifierParams(arch="resnet18", weights=None, freeze_backbone=False, optimizer="adam", lr=qc.lr,
                       weight_decay=0.0, epochs=qc.epochs, batch_size=qc.batch_size,
                       input_size=qc.input_size, augment=False)


# --------------------------------------------------------------------------- the filter


def run_qc(
    params: QCParams,
    synthetic: list[dict],
    real_train: list[dict],
    real_val: list[dict],
    classes: list[str],
    work_dir: str | os.PathLike,
    device: str = "auto",
    real_test: Optional[list[dict]] = None,
) -> tuple[list[dict], list[dict], dict]:
    """Filter ``synthetic``; returns (kept records, dropped records with ``qc_reason``, stats).

    With ``params.against_test`` and ``real_test``, ``stats["near_test"]`` lists the kept images
    that near-copy a real test image (:func:`near_test_copies`): reported, never dropped.

    ``work_dir`` receives the QC classifier checkpoint (the folder ``classifier/``: weights in
    ``tensors.safetensors``, metadata in ``meta.json``).
    """
    synthetic = sorted(synthetic, key=lambda r: r["path"])
    stats: dict = {"enabled": params.enabled, "n_in": len(synthetic)}
    if not params.enabled:
        stats.update(n_kept=len(synthetic), n_dropped=0, dropped_by={})
        return synthetic, [], stats

    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[r["label"]] for r in synthetic])
    reasons: dict[int, dict] = {}
    device = pick_device(device)
    need_classifier = params.wrong_class or params.dedup == "features"
    if need_classifier:
        checkpoint = Path(work_dir) / "classifier"
        train_stats = train_classifier(classifier_params(params), params.seed, real_train, real_val, classes, checkpoint,
                                       device=str(device))
        stats["classifier"] = {k: train_stats[k] for k in ("best_epoch", "best_val_accuracy", "n_train")}
        stats["timings"] = {"classifier_train_seconds": train_stats["train_seconds"], "device": train_stats["device"]}
        probs, feats, _ = probabilities_and_features(checkpoint, synthetic, device)
        agree = float((probs.argmax(1) == labels).mean())
        stats["classifier"]["agreement_with_labels"] = round(agree, 6)
        log.info("QC classifier: val accuracy %.4f, agrees with %.1f %% of synthetic labels",
                 train_stats["best_val_accuracy"], 100 * agree)
    if params.wrong_class:
        for i in wrong_class(probs, labels, params.confidence).tolist():
            top = int(probs[i].argmax())
            reasons[i] = {"reason": "wrong_class", "predicted": classes[top], "probability": round(float(probs[i, top]), 4)}

    if params.dedup != "none":
        candidates = [i for i in range(len(synthetic)) if i not in reasons]
        if params.dedup == "phash":
            syn = phashes(synthetic, "phash synthetic")
            real = phashes(real_train, "phash real") if params.against_real else None
            threshold: float = params.phash_max_distance
        else:
            syn = feats
            real = probabilities_and_features(checkpoint, real_train, device)[1] if params.against_real else None
            threshold = params.cosine_threshold
        for i, (pool, j, score) in near_duplicates(syn, real, candidates, params.dedup, threshold).items():
            other = (real_train if pool == "real" else synthetic)[j]
            key = "distance" if params.dedup == "phash" else "cosine"
            reasons[i] = {"reason": "copies_real" if pool == "real" else "duplicate",
                          "of": other["path"], key: round(score, 4)}

    kept = [r for i, r in enumerate(synthetic) if i not in reasons]
    dropped = [{**synthetic[i], "qc_reason": reasons[i]} for i in sorted(reasons)]
    by: dict[str, int] = {}
    for d in dropped:
        by[d["qc_reason"]["reason"]] = by.get(d["qc_reason"]["reason"], 0) + 1
    per_class = {c: {"in": int((labels == k).sum()), "kept": sum(r["label"] == c for r in kept)} for c, k in index.items()}
    stats.update(n_kept=len(kept), n_dropped=len(dropped), dropped_by=by, per_class=per_class)
    if params.against_test and real_test:
        kept_hashes = None
        if params.dedup == "phash":  # reuse the hashes computed for the duplicate search
            kept_hashes = syn[[i for i in range(len(synthetic)) if i not in reasons]]
        stats["near_test"] = near_test_copies(kept, real_test, params.phash_max_distance, kept_hashes)
    return kept, dropped, stats


def near_test_copies(kept: list[dict], real_test: list[dict], max_distance: int,
                     kept_hashes: Optional[np.ndarray] = None) -> dict:
    """Kept synthetic images whose 256-bit pHash is within ``max_distance`` of a real *test*
    image: a generator that reproduces test images inflates the test accuracy of every mix that
    holds them. Report only: ``{"n_checked", "n_test", "max_distance", "n_near_test", "matches":
    [{path, label, of, of_label, distance}]}`` (the closest test image per synthetic image)."""
    syn = kept_hashes if kept_hashes is not None else phashes(kept, "phash kept")
    test = phashes(real_test, "phash real test")
    matches = []
    if len(syn) and len(test):
        for start in range(0, len(syn), 256):
            d = hamming(syn[start : start + 256], test)
            for row in np.flatnonzero((d <= max_distance).any(1)).tolist():
                j = int(np.argmin(d[row]))
                rec = kept[start + row]
                matches.append({"path": rec["path"], "label": rec["label"], "of": real_test[j]["path"],
                                "of_label": real_test[j]["label"], "distance": int(d[row, j])})  # fmt: skip
    if matches:
        log.warning("%d kept synthetic images near-copy a real test image (report only: see the qc report)", len(matches))
    return {"n_checked": len(kept), "n_test": len(real_test), "max_distance": max_distance,
            "n_near_test": len(matches), "matches": matches}  # fmt: skip


def caption(d: dict) -> str:
    """A two-line caption for a dropped image in the contact sheet."""
    r = d["qc_reason"]
    if r["reason"] == "wrong_class":
        return f"{d['label'][:11]}\n->{r['predicted'][:9]} {r['probability']:.2f}"
    what = "copy:real" if r["reason"] == "copies_real" else "duplicate"
    score = r.get("distance", r.get("cosine"))
    return f"{d['label'][:11]}\n{what} {score:g}"


def markdown_report(stats: dict, dropped: list[dict], params: QCParams, sheet_name: Optional[str],
                    relative_to: Path) -> str:
    """What was dropped and why, for people: counts, per-class table, the contact sheet, a list."""
    if not stats["enabled"]:
        return ("# Quality control\n\nQuality control is **off** (`qc.enabled: false`): all "
                f"{stats['n_in']} synthetic images go to the mixes. Turn it on with "
                "`dvc exp run -S qc.enabled=true`.\n")  # fmt: skip
    lines = [
        "# Quality control",
        "",
        f"{stats['n_in']} synthetic images in, **{stats['n_kept']} kept**, {stats['n_dropped']} dropped "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(stats['dropped_by'].items())) or 'none'}).",
        "",
    ]
    if "classifier" in stats:
        c = stats["classifier"]
        lines += [
            f"Wrong-class filter: a ResNet-18 trained on the real train split ({c['n_train']} images, best epoch "
            f"{c['best_epoch']}, real validation accuracy {100 * c['best_val_accuracy']:.1f} %) agrees with "
            f"{100 * c['agreement_with_labels']:.1f} % of the synthetic labels; an image is dropped when another "
            f"class gets probability > {params.confidence}.",
            "",
        ]
    if params.dedup != "none":
        rule = (f"256-bit pHash Hamming distance <= {params.phash_max_distance}" if params.dedup == "phash"
                else f"cosine similarity of classifier features >= {params.cosine_threshold}")  # fmt: skip
        lines += [f"Near-duplicates: {rule}" + ("; also against the real train split." if params.against_real else "."), ""]
    lines += ["| Class | in | kept | dropped |", "|---|---:|---:|---:|"]
    for cls, pc in stats["per_class"].items():
        lines.append(f"| {cls} | {pc['in']} | {pc['kept']} | {pc['in'] - pc['kept']} |")
    lines.append("")
    if sheet_name:
        lines += [f"![dropped images]({sheet_name})", ""]
    if dropped:
        lines += ["| Image | Label | Reason | Detail |", "|---|---|---|---|"]
        for d in dropped:
            r = dict(d["qc_reason"])
            reason = r.pop("reason")
            if "of" in r:
                r["of"] = Path(os.path.relpath(r["of"], relative_to)).as_posix()
            detail = ", ".join(f"{k} {v}" for k, v in r.items())
            lines.append(f"| {Path(os.path.relpath(d['path'], relative_to)).as_posix()} | {d['label']} | {reason} | {detail} |")
    near = stats.get("near_test")
    if near is not None:
        rel = lambda p: Path(os.path.relpath(p, relative_to)).as_posix()  # noqa: E731
        lines += ["", "## Near-copies of real test images (reported, not dropped)", "",
                  f"{near['n_near_test']} of {near['n_checked']} kept images are within 256-bit pHash distance "
                  f"{near['max_distance']} of one of the {near['n_test']} real test images"
                  + (": mixes that hold them may score higher on the test split than they should." if near["matches"]
                     else "."), ""]  # fmt: skip
        if near["matches"]:
            lines += ["| Image | Label | Test image | Test label | Distance |", "|---|---|---|---|---:|"]
            for m in near["matches"]:
                lines.append(f"| {rel(m['path'])} | {m['label']} | {rel(m['of'])} | {m['of_label']} | {m['distance']} |")
    return "\n".join(lines) + "\n"


def qc_stage(params: Params, *, synthetic: Input, real: Input, val: Input, test: Input, classes: Input,
             out: Output, report: Output, metrics: Output) -> None:
    """Stage qc: quality control of the synthetic set before mixing (qc.enabled; off = every
    image passes, nothing is trained). Writes the kept and dropped manifests, a report with a
    contact sheet of what was dropped, and the counts as metrics. With qc.against_test the
    report also lists kept images that near-copy a real test image (nothing is dropped for it)."""
    import os

    from synthmix.core.atomic import write_json, write_text
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_classes
    from synthmix.data.contact import write_contact_sheet
    from synthmix.data.manifest import read_manifest, write_manifest

    p = params.qc
    out_dir, report_dir = Path(out), Path(report)
    records = read_manifest(synthetic)
    real_records = read_manifest(real) if p.enabled else []
    val_records = read_manifest(val) if p.enabled else []
    test_records = read_manifest(test) if p.enabled and p.against_test else None
    kept, dropped, stats = run_qc(p, records, real_records, val_records, read_classes(classes), out_dir,
                                  device=params.device, real_test=test_records)
    sheet = None
    if p.enabled:
        sheet = "dropped.png"
        shown = dropped[: p.sheet_max]
        title = f"dropped by quality control: {len(dropped)}" + (f" (first {len(shown)})" if len(shown) < len(dropped) else "")
        write_contact_sheet(report_dir / sheet, [d["path"] for d in shown], [caption(d) for d in shown],
                            cols=8, thumb=80, title=title)
    elif (report_dir / "dropped.png").exists():
        (report_dir / "dropped.png").unlink()
    write_text(report_dir / "report.md", markdown_report(stats, dropped, p, sheet, report_dir.resolve()))
    for d in dropped:  # the matched image, relative to the manifest like every path in it
        if "of" in d["qc_reason"]:
            d["qc_reason"]["of"] = os.path.relpath(d["qc_reason"]["of"], out_dir.resolve())
    write_manifest(out_dir / "manifest.jsonl", kept)
    write_manifest(out_dir / "dropped.jsonl", dropped)
    for m in stats.get("near_test", {}).get("matches", []):  # relative to the report, like report.md
        m["path"], m["of"] = [Path(os.path.relpath(m[k], report_dir.resolve())).as_posix() for k in ("path", "of")]
    # metrics/qc.json: the counts only (dvc exp show columns); everything else in the report dir
    counts = {k: stats[k] for k in ("enabled", "n_in", "n_kept", "n_dropped", "dropped_by")}
    if "near_test" in stats:
        counts["n_near_test"] = stats["near_test"]["n_near_test"]
    write_json(metrics, counts)
    timings = stats.pop("timings", None)
    if timings:  # differs between runs of the same inputs: kept out of dvc.lock's hashes
        write_timings(metrics, timings)
    write_json(report_dir / "details.json", stats)
    print(f"qc: {stats['n_kept']} of {stats['n_in']} synthetic images kept ({stats['n_dropped']} dropped)")
