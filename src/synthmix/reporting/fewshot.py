"""Stage fewshot_summarize: the few-shot table, plot and ``dvc exp show`` metrics over trials."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.fewshot.subsets import run_name
from synthmix.reporting.format import pct

if TYPE_CHECKING:
    from synthmix.config import Params


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
        ci = lambda s: f"{pct(s['mean'])} [{pct(s['ci_low'])}, {pct(s['ci_high'])}]"  # noqa: E731
        vs = row.get("vs_baseline")
        delta = f"{100 * vs['mean']:+.2f} [{pct(vs['ci_low'])}, {pct(vs['ci_high'])}]" if vs else "–"
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

