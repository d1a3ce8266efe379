"""seg_summarize: model x mix -> mIoU mean and Student-t interval across training seeds, the
seed-paired difference to the baseline mix (mean, interval and paired t-test of the per-seed
differences: both runs of a pair share the seed, so seed-to-seed variation cancels), the
image-paired difference on the same test images (each image's mIoU, mean over seeds, against
the baseline's: Wilcoxon signed-rank test), and per-class IoU with its difference to the
baseline."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from synthmix.config import Params
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.reporting.format import pct
from synthmix.stats import mean_std_ci, paired_t, signed_rank


def summarize_seg(
    runs: Mapping[tuple[str, str, int], Mapping], mixes: Sequence[str], models: Sequence[str], seeds: Sequence[int],
    baseline: str, confidence: float, classes: Sequence[str],
) -> dict:  # fmt: skip
    """``runs[(mix, model, seed)]`` holds seg_evaluate's metrics (``miou``, ``iou``)."""
    rows = []
    for model in models:
        base = [runs[(baseline, model, s)]["miou"] for s in seeds]
        for mix in mixes:
            missing = [s for s in seeds if (mix, model, s) not in runs]
            if missing:
                raise DataError(f"no seg_evaluate metrics for {mix} / {model} / seeds {missing}: run dvc repro")
            vals = [runs[(mix, model, s)]["miou"] for s in seeds]
            stats = mean_std_ci(vals, confidence)
            per_class, per_class_delta = [], []
            for c in range(len(classes)):
                v = [runs[(mix, model, s)]["iou"][c] for s in seeds if runs[(mix, model, s)]["iou"][c] is not None]
                per_class.append(float(np.mean(v)) if v else None)
                # seed-paired: only seeds where both runs have an IoU for the class
                d = [runs[(mix, model, s)]["iou"][c] - runs[(baseline, model, s)]["iou"][c] for s in seeds
                     if runs[(mix, model, s)]["iou"][c] is not None and runs[(baseline, model, s)]["iou"][c] is not None]
                per_class_delta.append(float(np.mean(d)) if d else None)
            diffs = [a - b for a, b in zip(vals, base)]
            paired = None
            if mix != baseline:
                ci = mean_std_ci(diffs, confidence)
                paired = {"diffs": diffs, "mean": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
                          **{f"t_{k}": v for k, v in paired_t(vals, base).items()}}  # fmt: skip
                per_image = [runs[(m, model, s)].get("per_image_miou") for m in (mix, baseline) for s in seeds]
                if all(per_image):  # each test image's mIoU, mean over seeds, mix against baseline
                    k = len(seeds)
                    mix_img, base_img = np.mean(per_image[:k], axis=0), np.mean(per_image[k:], axis=0)
                    paired["per_image"] = signed_rank(mix_img, base_img)
            rows.append({
                "model": model, "mix": mix, "synthetic_pairs": runs[(mix, model, seeds[0])].get("synthetic_pairs"),
                "train_pairs": runs[(mix, model, seeds[0])].get("train_pairs"),
                "miou": vals, **{f"miou_{k}": v for k, v in stats.items()},
                "delta_vs_baseline": float(np.mean(vals) - np.mean(base)),
                "paired_vs_baseline": paired,
                "iou_per_class": dict(zip(classes, per_class)),
                "iou_delta_vs_baseline": dict(zip(classes, per_class_delta)),
            })  # fmt: skip
    return {"baseline": baseline, "confidence": confidence, "seeds": list(seeds), "rows": rows}


def _pts(x) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def table1(summary: dict) -> str:
    """The source study's Table 1 layout: one row per model, one column per mix, each cell the mIoU
    (%) mean over seeds +- the half-width of its interval (a single seed: the mean alone)."""
    models = list(dict.fromkeys(r["model"] for r in summary["rows"]))
    mixes = list(dict.fromkeys(r["mix"] for r in summary["rows"]))
    cell = {(r["model"], r["mix"]): r for r in summary["rows"]}
    lines = ["| Model | " + " | ".join(mixes) + " |", "|---|" + "---:|" * len(mixes)]
    for model in models:
        cells = []
        for mix in mixes:
            r = cell.get((model, mix))
            if r is None:
                cells.append("–")
                continue
            half = None if r["miou_ci_high"] is None else (r["miou_ci_high"] - r["miou_ci_low"]) / 2
            cells.append(pct(r["miou_mean"]) + ("" if half is None else f" ± {100 * half:.2f}"))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(summary: dict) -> str:
    conf = round(100 * summary["confidence"])
    base = summary["baseline"]
    n = len(summary.get("seeds", []))
    lines = [
        f"mIoU (%) on the real test split, mean over {n} seed{'s' if n != 1 else ''} ± half the {conf} % "
        "interval (models × mixes, the source's Table 1 layout):",
        "",
        table1(summary).rstrip("\n"),
        "",
        "Per run set:",
        "",
        f"| Model | Mix | Synthetic / train pairs | mIoU (%) | {conf} % CI | Δ vs {base} (pts) | "
        f"paired Δ {conf} % CI (pts) | p (paired t) | per-image median Δ (pts) | p (signed-rank, images) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        sd = "" if r["miou_std"] is None else f" ± {100 * r['miou_std']:.2f}"
        ci = "–" if r["miou_ci_low"] is None else f"[{pct(r['miou_ci_low'])}, {pct(r['miou_ci_high'])}]"
        pr = r["paired_vs_baseline"]
        img = (pr or {}).get("per_image")
        if pr is None:
            delta, pci, p, imed, ip = "(baseline)", "", "", "", ""
        else:
            delta = f"{100 * r['delta_vs_baseline']:+.2f}"
            pci = "–" if pr["ci_low"] is None else f"[{_pts(pr['ci_low'])}, {_pts(pr['ci_high'])}]"
            p = "–" if pr["t_p"] is None else f"{pr['t_p']:.3g}"
            imed = "–" if img is None else _pts(img["median_diff"])
            ip = "–" if img is None or img["p"] is None else f"{img['p']:.3g}"
        lines.append(f"| {r['model']} | {r['mix']} | {r['synthetic_pairs']} / {r['train_pairs']} | "
                     f"{pct(r['miou_mean'])}{sd} | {ci} | {delta} | {pci} | {p} | {imed} | {ip} |")  # fmt: skip
    classes = list(summary["rows"][0]["iou_per_class"]) if summary["rows"] else []
    lines += ["", f"Per-class IoU (%), mean over seeds (Δ vs {base} in points, seed-paired):", "",
              "| Model | Mix | " + " | ".join(classes) + " |", "|---|---|" + "---:|" * len(classes)]  # fmt: skip
    for r in summary["rows"]:
        cells = []
        for c in classes:
            v, d = r["iou_per_class"][c], r["iou_delta_vs_baseline"][c]
            cells.append(pct(v) + ("" if r["mix"] == base or d is None else f" ({_pts(d)})"))
        lines.append(f"| {r['model']} | {r['mix']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def exp_metrics(summary: dict) -> dict:
    """What `dvc exp show` lists: mIoU mean per model and mix."""
    out: dict = {"miou": {}}
    for r in summary["rows"]:
        out["miou"].setdefault(r["model"], {})[r["mix"]] = round(r["miou_mean"], 6)
    return out


def plot_rows(summary: dict) -> list[dict]:
    return [{"model": r["model"], "mix": r["mix"], "miou_mean": round(r["miou_mean"], 6)} for r in summary["rows"]]


def seg_summarize_stage(params: Params, *, runs: Input, classes: Input, out: Output, details: Output,
                        table: Output, plot_data: Output) -> None:
    """Stage seg_summarize: model x mix -> mIoU (mean, interval across seeds) as JSON, Markdown and plot data."""
    import csv
    import io
    from pathlib import Path

    from synthmix.core.atomic import read_json, write_json, write_text
    from synthmix.data.classes import read_classes
    from synthmix.segmentation.train import run_name

    mixes, models, seeds = params.seg_mix.names, params.seg_train.models, params.seg_train.seeds
    results = {(m, a, s): read_json(Path(runs) / f"{run_name(m, a, s)}.json")
               for m in mixes for a in models for s in seeds}  # fmt: skip
    summary = summarize_seg(results, mixes, models, seeds, params.seg_summarize.baseline,
                            params.seg_summarize.confidence, read_classes(classes))  # fmt: skip
    text = markdown(summary)
    write_json(out, exp_metrics(summary))
    write_json(details, summary)
    write_text(table, text)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["model", "mix", "miou_mean"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(plot_rows(summary))
    write_text(plot_data, buf.getvalue())
    print(text, end="")
