"""seg_summarize: model x mix -> mIoU mean and Student-t interval across training seeds."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from synthmix.core.errors import DataError
from synthmix.stats import mean_std_ci
from synthmix.config import Params
from synthmix.core.stage import Input, Output


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
            per_class = []
            for c in range(len(classes)):
                v = [runs[(mix, model, s)]["iou"][c] for s in seeds if runs[(mix, model, s)]["iou"][c] is not None]
                per_class.append(float(np.mean(v)) if v else None)
            rows.append({
                "model": model, "mix": mix, "synthetic_pairs": runs[(mix, model, seeds[0])].get("synthetic_pairs"),
                "train_pairs": runs[(mix, model, seeds[0])].get("train_pairs"),
                "miou": vals, **{f"miou_{k}": v for k, v in stats.items()},
                "delta_vs_baseline": float(np.mean(vals) - np.mean(base)),
                "iou_per_class": dict(zip(classes, per_class)),
            })  # fmt: skip
    return {"baseline": baseline, "confidence": confidence, "seeds": list(seeds), "rows": rows}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def markdown(summary: dict) -> str:
    conf = round(100 * summary["confidence"])
    lines = [
        f"| Model | Mix | Synthetic / train pairs | mIoU (%) | {conf} % CI | Δ vs {summary['baseline']} (pts) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in summary["rows"]:
        sd = "" if r["miou_std"] is None else f" ± {100 * r['miou_std']:.2f}"
        ci = "–" if r["miou_ci_low"] is None else f"[{_pct(r['miou_ci_low'])}, {_pct(r['miou_ci_high'])}]"
        delta = "(baseline)" if r["mix"] == summary["baseline"] else f"{100 * r['delta_vs_baseline']:+.2f}"
        lines.append(f"| {r['model']} | {r['mix']} | {r['synthetic_pairs']} / {r['train_pairs']} | "
                     f"{_pct(r['miou_mean'])}{sd} | {ci} | {delta} |")  # fmt: skip
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
