"""The few-shot protocol of DA-Fusion (study 4): k real images per class, image-to-image
variants of them, a linear probe per method, and the summary over trials.

Per (k examples per class, trial), as a DVC matrix:

0. ``fewshot_features``: the backbone's features of the real validation and test splits, once.
1. ``fewshot_variants``: the trial's real subset (a per-class permutation seeded by
   (``fewshot.seed``, trial, class), cut at k, so the subsets of one trial are nested) and, per
   method, ``generate.img2img.per_image`` variants of every subset image:
   ``dafusion`` with ``generate.img2img``'s randomized strengths and its leakage control,
   ``real_guidance`` with one strength (``fewshot.real_guidance_strength``) and the class name
   in the prompt (He et al. 2023). Variants are seeded by their source image, so an image in
   several subsets gets the same variants in each. They are DVC outputs: changing only the
   classifier never regenerates them.
2. ``fewshot_train``: a linear probe on a frozen pretrained backbone (DA-Fusion: ResNet-50, Adam
   1e-4, batch 32, 50 epochs of 200 iterations) per method, every image's features computed
   once. Each epoch visits ``fewshot.samples_per_epoch`` samples of the subset; each sample is
   swapped with probability ``fewshot.alpha`` for one of the variants *of that same image*
   (``lrr``), drawn per sample and epoch from a generator seeded by (trial, epoch).
   ``baseline`` never swaps. With ``fewshot.classifier.augment``, every method sees a random
   horizontal flip of each sample (the flipped images' features are computed once too). The
   head of the last epoch is kept: a few-shot learner has no validation split to select on
   (the real validation accuracy is reported, never used).
3. ``fewshot_summarize``: accuracy and mean per-class accuracy (DA-Fusion's metric) on the real
   test split, mean and Student-t interval over trials, per k and method; a plot against k.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synthmix.config import Params
from synthmix.config.fewshot import FewshotParams
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.seeding import derive_seed
from synthmix.core.stage import Input, Output

log = logging.getLogger(__name__)

REAL = "real.jsonl"
VARIANT_METHODS = ("real_guidance", "dafusion")  # the methods that need image-to-image variants


def run_name(shot: int, trial: int) -> str:
    return f"k{shot}-t{trial}"


# --------------------------------------------------------------------------------------
# 1. the subset and its variants
# --------------------------------------------------------------------------------------


def draw_subset(records: Sequence[dict], classes: Sequence[str], shot: int, seed: int, trial: int) -> list[dict]:
    """``shot`` real images per class: a permutation seeded by (seed, trial, class) cut at
    ``shot`` (so a trial's subsets are nested: its 1-shot image is in its 4-shot subset)."""
    out = []
    for cls in classes:
        pool = sorted((r for r in records if r["label"] == cls), key=lambda r: r["sha256"])
        if len(pool) < shot:
            raise DataError(f"fewshot: {shot} examples of class {cls!r} wanted, the real train split has "
                            f"{len(pool)}: lower fewshot.shots or raise prepare.train_per_class")
        order = np.random.default_rng(derive_seed("fewshot", seed, trial, cls)).permutation(len(pool))
        out.extend(pool[i] for i in order[:shot])
    return out


def method_generate_params(params: Params, method: str):
    """generate's params for one method's variants: DA-Fusion = generate.img2img as set;
    Real Guidance = one strength and the class name allowed in the prompt (textual inversion off:
    the prompt is generate.prompt's template with the class text)."""
    g = params.generate
    img2img = g.img2img
    sd = g.sd
    if method == "real_guidance":
        img2img = img2img.model_copy(update={"strengths": [params.fewshot.real_guidance_strength], "probs": None,
                                             "forbid_class_names": False})
        sd = sd.model_copy(update={"textual_inversion": False})
    elif method != "dafusion":
        raise ParamsError(f"fewshot method {method!r} makes no variants")
    return g.model_copy(update={"mode": "img2img", "img2img": img2img, "sd": sd})


def variants_stage(params: Params, shot: int, trial: int, *, real: Input, classes: Input, model: Input,
                   lora: Input, textual_inversion: Input, erased: Input, out: Output) -> None:
    """Stage fewshot_variants: the (shot, trial) real subset (``real.jsonl``) and, per method that
    needs them, ``generate.img2img.per_image`` image-to-image variants of each subset image
    (``<method>/manifest.jsonl`` + images, resumable like generate)."""
    from synthmix.core.atomic import building_dir, write_json
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.generate import device_for_rank, generate_synthetic

    p = params.fewshot
    class_list = read_classes(classes)
    subset = draw_subset(read_manifest(real), class_list, shot, p.seed, trial)
    stats = {"shot": shot, "trial": trial, "n_real": len(subset)}
    name = run_name(shot, trial)
    scratch_root = Path(out).parent / ".partial" / name  # per run: matrix stages may run side by side
    with building_dir(out) as tmp:
        write_manifest(tmp / REAL, subset)
        for method in (m for m in p.methods if m in VARIANT_METHODS):
            result = generate_synthetic(
                method_generate_params(params, method), model, tmp / method, device=device_for_rank(params.device, 1),
                scratch_root=scratch_root / method, classes=class_list, lora_dir=lora, ti_dir=textual_inversion,
                erased_dir=erased, sources=subset,
            )
            stats[method] = {k: result[k] for k in ("total", "generated", "reused")}
        write_json(tmp / "variants.json", stats)
    for leftover in (scratch_root, scratch_root.parent):
        try:
            leftover.rmdir()
        except OSError:
            pass
    print(f"{out}: {len(subset)} real images, " + ", ".join(
        f"{m}: {stats[m]['total']} variants" for m in p.methods if m in VARIANT_METHODS))


# --------------------------------------------------------------------------------------
# 2. the linear probe
# --------------------------------------------------------------------------------------


class FeatureBank:
    """A frozen timm backbone and the features of every image it has seen, computed once."""

    def __init__(self, clf, classes: Sequence[str], device: torch.device):
        from synthmix.classify.train import build_model, freeze_backbone, normalisation

        self.params, self.classes, self.device = clf, list(classes), device
        self.model = build_model(clf.arch, len(classes), clf.weights).to(device).to(memory_format=torch.channels_last)
        freeze_backbone(self.model)
        self.model.eval()
        mean, std = normalisation(self.model, clf.weights)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def embed(self, records: list[dict], desc: str, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of ``records``; ``flip``: of their horizontal mirror images."""
        from synthmix.classify.train import embed_images, load_images
        from synthmix.core.device import autocast_dtype

        x, y = load_images(records, self.classes, self.params.input_size, desc)
        if flip:
            x = x.flip(-1)
        return embed_images(self.model, x, self.mean, self.std, self.device, 256, autocast_dtype(self.device)), y

    def head(self) -> torch.nn.Module:
        """A fresh copy of the model's classifier head (its own init, seeded by the caller)."""
        import copy

        head = copy.deepcopy(self.model.get_classifier())
        for m in head.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        return head.train()


FEATURES_FORMAT = "synthmix-fewshot-features/1"


def classifier_key(clf) -> dict:
    """What decides the features of an image: backbone, weights, input size."""
    return {"arch": clf.arch, "weights": clf.weights, "input_size": clf.input_size}


def features_stage(params: Params, *, val: Input, test: Input, classes: Input, out: Output) -> None:
    """Stage fewshot_features: the frozen backbone's features of the real validation and test
    splits, computed once for every (shot, trial) run (safetensors + meta.json)."""
    from synthmix.core.checkpoint import save_checkpoint
    from synthmix.core.device import pick_device, set_threads
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    clf = params.fewshot.classifier
    set_threads(clf.num_threads)
    class_list = read_classes(classes)
    bank = FeatureBank(clf, class_list, pick_device(params.device))
    f_val, y_val = bank.embed(read_manifest(val), "val")
    f_test, y_test = bank.embed(read_manifest(test), "test")
    save_checkpoint(out, {"val_features": f_val.cpu(), "val_labels": y_val, "test_features": f_test.cpu(),
                          "test_labels": y_test},
                    {"format": FEATURES_FORMAT, "classes": class_list, **classifier_key(clf)})
    print(f"{out}: features of {len(y_val)} val and {len(y_test)} test images ({clf.arch}, {f_test.shape[1]}-d)")


def load_features(folder: Path, clf, classes: Sequence[str]) -> dict:
    """The fewshot_features folder, checked against the classifier settings and classes."""
    from synthmix.core.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(folder, FEATURES_FORMAT, "fewshot_features")
    if {k: meta.get(k) for k in classifier_key(clf)} != classifier_key(clf) or meta.get("classes") != list(classes):
        raise DataError(f"{folder} was computed for {({k: meta.get(k) for k in classifier_key(clf)})} and classes "
                        f"{meta.get('classes')}, not for fewshot.classifier {classifier_key(clf)}: run dvc repro "
                        "fewshot_features")
    return tensors


def swap_table(n_real: int, real_sha: Sequence[str], variants: Sequence[dict]) -> list[list[int]]:
    """For each real image, the rows (in ``variants``) of its own variants."""
    rows: dict[str, list[int]] = {s: [] for s in real_sha}
    for i, v in enumerate(variants):
        if v.get("source_sha256") in rows:
            rows[v["source_sha256"]].append(i)
    table = [rows[s] for s in real_sha]
    missing = sum(not t for t in table)
    if missing:
        raise DataError(f"{missing} of {n_real} real images have no variant: re-run fewshot_variants")
    return table


def draw_epoch(samples: int, alpha: float, trial: int, epoch: int, n_real: int):
    """One epoch's draws, seeded by (trial, epoch), the same for every method: which of the
    ``n_real`` images each sample is (uniform, with replacement), whether it is mirrored, whether
    it is swapped (probability ``alpha``) and a uniform number that picks the variant
    (:func:`swap_rows`)."""
    gen = torch.Generator().manual_seed(derive_seed("fewshot-epoch", trial, epoch) % (2**63))
    idx = torch.randint(0, n_real, (samples,), generator=gen)
    use_swap = torch.rand(samples, generator=gen) < alpha
    pick = torch.rand(samples, generator=gen)
    flip = torch.rand(samples, generator=gen) < 0.5
    return idx, flip, use_swap, pick


def swap_rows(table: list[list[int]], idx: torch.Tensor, use_swap: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """The variant row of each swapped sample (uniform among its image's variants), -1 if kept."""
    counts = torch.tensor([len(t) for t in table])
    offsets = torch.tensor(np.cumsum([0] + [len(t) for t in table])[:-1])
    flat = torch.tensor([i for t in table for i in t])
    rows = flat[offsets[idx] + (pick * counts[idx]).long().clamp(max=counts[idx] - 1)]
    return torch.where(use_swap, rows, torch.full_like(rows, -1))


def train_probe(p: FewshotParams, trial: int, method: str, f_real: torch.Tensor, f_real_flip: torch.Tensor | None,
                y_real: torch.Tensor, f_var: torch.Tensor | None, f_var_flip: torch.Tensor | None,
                table: list[list[int]] | None, make_head) -> tuple[torch.nn.Module, dict]:
    """Train a linear head on cached features; see the module docstring for the schedule."""
    from synthmix.classify.train import make_optimizer

    clf = p.classifier
    torch.manual_seed(derive_seed("fewshot-head", trial, method) % (2**63))
    head = make_head()
    opt = make_optimizer(clf, head)
    n = len(y_real)
    swap = table is not None and method != "baseline"
    swapped_total = seen = 0
    for epoch in range(1, clf.epochs + 1):
        idx, flip, use_swap, pick = draw_epoch(p.samples_per_epoch, p.alpha, trial, epoch, n)
        feats = f_real[idx].clone()
        if clf.augment:
            feats[flip] = f_real_flip[idx[flip]]
        if swap:
            rows = swap_rows(table, idx, use_swap, pick)
            hit = rows >= 0
            var = f_var[rows[hit]]
            if clf.augment:
                var = torch.where(flip[hit, None], f_var_flip[rows[hit]], var)
            feats[hit] = var
            swapped_total += int(hit.sum())
        labels = y_real[idx]
        for s in range(0, p.samples_per_epoch, clf.batch_size):
            loss = F.cross_entropy(head(feats[s : s + clf.batch_size]), labels[s : s + clf.batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seen += p.samples_per_epoch
    head.eval()
    return head, {"swap_rate": round(swapped_total / seen, 6) if swap else 0.0, "final_loss": round(loss.item(), 6)}


def scores(head: torch.nn.Module, feats: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict:
    from synthmix.classify.evaluate import accuracies, confusion_matrix, mean_per_class_accuracy

    with torch.no_grad():
        pred = head(feats).argmax(1).cpu()
    cm = confusion_matrix(labels, pred, len(classes))
    accuracy, per_class = accuracies(cm)
    return {"accuracy": round(accuracy, 6), "mean_per_class_accuracy": round(mean_per_class_accuracy(cm), 6),
            "per_class_accuracy": dict(zip(classes, per_class))}


def train_stage(params: Params, shot: int, trial: int, *, variants: Input, features: Input,
                classes: Input, metrics: Output) -> None:
    """Stage fewshot_train: per method, a linear probe on the (shot, trial) subset (and its
    variants), scored on the real test split (accuracy, mean per-class accuracy)."""
    from synthmix.core.atomic import write_json
    from synthmix.core.device import pick_device, set_threads
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    p = params.fewshot
    if not p.classifier.freeze_backbone:
        raise ParamsError("fewshot.classifier.freeze_backbone must be true: the few-shot protocol trains a linear "
                          "probe on a frozen pretrained backbone (DA-Fusion's setting)")
    set_threads(p.classifier.num_threads)
    device = pick_device(params.device)
    class_list = read_classes(classes)
    variants = Path(variants)
    real = read_manifest(variants / REAL)
    bank = FeatureBank(p.classifier, class_list, device)
    f_real, y_real = bank.embed(real, "real subset")
    f_real_flip = bank.embed(real, "real subset, flipped", flip=True)[0] if p.classifier.augment else None
    cached = load_features(Path(features), p.classifier, class_list)
    f_val, y_val = cached["val_features"].to(device), cached["val_labels"]
    f_test, y_test = cached["test_features"].to(device), cached["test_labels"]
    result: dict[str, Any] = {"shot": shot, "trial": trial, "n_real": len(real), "n_test": len(y_test),
                              "arch": p.classifier.arch, "methods": {}}
    for method in p.methods:
        f_var = f_var_flip = table = None
        n_var = 0
        if method in VARIANT_METHODS:
            manifest = variants / method / "manifest.jsonl"
            if not manifest.is_file():
                raise DataError(f"{manifest} is missing: re-run dvc repro fewshot_variants")
            recs = read_manifest(manifest)
            f_var, y_var = bank.embed(recs, f"{method} variants")
            if p.classifier.augment:
                f_var_flip = bank.embed(recs, f"{method} variants, flipped", flip=True)[0]
            table = swap_table(len(real), [r["sha256"] for r in real], recs)
            n_var = len(recs)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 1280 x C head: thread hand-offs cost more than the maths (10x measured)
        try:
            head, info = train_probe(p, trial, method, f_real, f_real_flip, y_real, f_var, f_var_flip, table,
                                     bank.head)
        finally:
            torch.set_num_threads(threads)
        result["methods"][method] = {**scores(head, f_test, y_test, class_list),
                                     "val_accuracy": scores(head, f_val, y_val, class_list)["accuracy"],
                                     "n_variants": n_var, **info}
        log.info("k=%d trial %d %s: test accuracy %.4f", shot, trial, method, result["methods"][method]["accuracy"])
    write_json(metrics, result)
    print(f"{metrics}: " + ", ".join(f"{m} {r['accuracy']:.4f}" for m, r in result["methods"].items()))


# --------------------------------------------------------------------------------------
# 3. the summary
# --------------------------------------------------------------------------------------


def summarize_runs(runs: Sequence[dict], confidence: float) -> dict:
    """Per k and method: mean, std and Student-t interval over trials of accuracy and mean
    per-class accuracy; and the difference to the baseline, paired by trial."""
    from synthmix.stats import mean_std_ci, paired_t

    shots = sorted({r["shot"] for r in runs})
    methods = list(dict.fromkeys(m for r in runs for m in r["methods"]))
    out: dict[str, Any] = {"confidence": confidence, "shots": shots, "methods": methods, "rows": []}
    for k in shots:
        rows = sorted((r for r in runs if r["shot"] == k), key=lambda r: r["trial"])
        for m in methods:
            vals = [r["methods"][m] for r in rows if m in r["methods"]]
            row = {"shot": k, "method": m, "trials": [r["trial"] for r in rows if m in r["methods"]]}
            for key in ("accuracy", "mean_per_class_accuracy"):
                row[key] = mean_std_ci([v[key] for v in vals], confidence)
            if m != "baseline" and all("baseline" in r["methods"] for r in rows):
                diff = [r["methods"][m]["mean_per_class_accuracy"] - r["methods"]["baseline"]["mean_per_class_accuracy"]
                        for r in rows if m in r["methods"]]
                row["vs_baseline"] = {**mean_std_ci(diff, confidence), **paired_t(
                    [r["methods"][m]["mean_per_class_accuracy"] for r in rows],
                    [r["methods"]["baseline"]["mean_per_class_accuracy"] for r in rows])}
            out["rows"].append(row)
    return out


def exp_metrics(summary: dict) -> dict:
    """The flat, rounded view for ``dvc exp show``: k<k>.<method>.<metric>_mean."""
    flat: dict[str, dict] = {}
    for row in summary["rows"]:
        entry = flat.setdefault(f"k{row['shot']}", {}).setdefault(row["method"], {})
        entry["accuracy_mean"] = round(row["accuracy"]["mean"], 4)
        entry["mean_per_class_accuracy_mean"] = round(row["mean_per_class_accuracy"]["mean"], 4)
        if row.get("vs_baseline"):
            entry["vs_baseline_mean"] = round(row["vs_baseline"]["mean"], 4)
    return flat


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def markdown_table(summary: dict) -> str:
    conf = int(round(100 * summary["confidence"]))
    lines = [
        f"Few-shot classification on the real test split: mean over trials [{conf} % Student-t interval]; "
        "Δ = mean per-class accuracy minus the baseline's, paired by trial (paired t-test p).",
        "",
        "| examples per class | method | trials | accuracy (%) | mean per-class accuracy (%) | Δ vs baseline (points) | p |",
        "|---:|---|---:|---|---|---|---:|",
    ]
    for row in summary["rows"]:
        acc, mpc = row["accuracy"], row["mean_per_class_accuracy"]
        ci = lambda s: f"{_pct(s['mean'])} [{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]"  # noqa: E731
        vs = row.get("vs_baseline")
        delta = f"{100 * vs['mean']:+.2f} [{_pct(vs['ci_low'])}, {_pct(vs['ci_high'])}]" if vs else "–"
        p = f"{vs['p']:.3g}" if vs and vs.get("p") is not None else "–"
        lines.append(f"| {row['shot']} | {row['method']} | {len(row['trials'])} | {ci(acc)} | {ci(mpc)} | {delta} | {p} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, png: Path) -> None:
    """Mean per-class accuracy against examples per class (log2 axis), one line per method with
    its interval over trials as a band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from synthmix.core.atomic import atomic_open

    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for m in summary["methods"]:
        rows = [r for r in summary["rows"] if r["method"] == m]
        k = [r["shot"] for r in rows]
        mean = [100 * r["mean_per_class_accuracy"]["mean"] for r in rows]
        lo = [100 * (r["mean_per_class_accuracy"]["ci_low"] or r["mean_per_class_accuracy"]["mean"]) for r in rows]
        hi = [100 * (r["mean_per_class_accuracy"]["ci_high"] or r["mean_per_class_accuracy"]["mean"]) for r in rows]
        line, = ax.plot(k, mean, marker="o", label=m.replace("_", " "))
        ax.fill_between(k, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xticks(summary["shots"], [str(k) for k in summary["shots"]])
    ax.set_xlabel("real examples per class")
    ax.set_ylabel("mean per-class accuracy (%)")
    ax.set_title(f"Few-shot: {int(round(100 * summary['confidence']))} % interval over trials")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(png, "wb") as fh:
        fig.savefig(fh, format="png")


def summarize_stage(params: Params, *, runs: Input, out: Output, details: Output, table: Output,
                    plot_png: Output, plot_data: Output) -> None:
    """Stage fewshot_summarize: the table, the plot and the ``dvc exp show`` metrics over every
    (shot, trial) run of fewshot_train."""
    import csv

    from synthmix.core.atomic import atomic_open, read_json, write_json, write_text

    p = params.fewshot
    found = []
    for shot in p.shots:
        for trial in p.trials:
            path = Path(runs) / f"{run_name(shot, trial)}.json"
            if not path.is_file():
                raise DataError(f"{path} is missing: run dvc repro fewshot_train")
            found.append(read_json(path))
    summary = summarize_runs(found, p.confidence)
    write_json(details, summary)
    write_json(out, exp_metrics(summary))
    write_text(table, markdown_table(summary))
    plot(summary, plot_png)
    with atomic_open(plot_data, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["shot", "method", "mean_per_class_accuracy", "accuracy"])
        for row in summary["rows"]:
            writer.writerow([row["shot"], row["method"], round(row["mean_per_class_accuracy"]["mean"], 6),
                             round(row["accuracy"]["mean"], 6)])
    print(markdown_table(summary))

