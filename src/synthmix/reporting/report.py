"""``metrics/REPORT.md``: the experiment written up like the source papers' results section.

It gathers what the other stages wrote (the accuracy table and plot of ``summarize``, the
cross-dataset accuracies of ``evaluate``, the FID table of ``fidelity``, the QC counts) and
adds the pictures people want to look at:

- a contact sheet per class of the synthetic set, and one of the real train split (a row
  per class) to compare against;
- confusion matrices (baseline mix and the most synthetic one, seed-averaged counts);
- training curves (validation accuracy per epoch, every run, from the ``train`` stage's DVCLive
  folders ``metrics/train/<mix>-seed<seed>/plots/metrics/val_accuracy.tsv``).

Images are small PNGs next to the report (``metrics/report/``), committed with the metrics
and declared as DVC plots, so ``dvc plots show`` / ``dvc plots diff`` render them too.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from synthmix.config import Params
from synthmix.core.atomic import atomic_open
from synthmix.core.errors import DataError
from synthmix.core.live import read_metric
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.contact import write_contact_sheet
from synthmix.reporting.classification import ratio_label
from synthmix.reporting.format import pct

log = logging.getLogger(__name__)


def _read_json(path: Path) -> Optional[Any]:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _sample(records: list[dict], n: int, seed: int, pool: str) -> list[dict]:
    records = sorted(records, key=lambda r: r["path"])
    if len(records) <= n:
        return records
    rng = np.random.default_rng(derive_seed("report", seed, pool))
    return [records[i] for i in sorted(rng.choice(len(records), n, replace=False))]


def contact_sheets(real: list[dict], synthetic: list[dict], classes: Sequence[str], out_dir: Path,
                   per_class: int = 32, seed: int = 0) -> dict[str, Any]:
    """``real.png`` (a row of 16 per class) and ``synthetic_<class>.png`` (``per_class`` images each)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("synthetic_*.png"):  # classes removed since the last run
        old.unlink()
    row = 16
    real_imgs = []
    for c in classes:
        pick = _sample([r for r in real if r["label"] == c], row, seed, f"real:{c}")
        real_imgs += [r["path"] for r in pick] + [None] * (row - len(pick))
    from PIL import Image

    blank = Image.new("RGB", (8, 8), (255, 255, 255))
    write_contact_sheet(out_dir / "real.png", [p or blank for p in real_imgs], cols=row, thumb=48,
                        title="real train split: one row per class, " + ", ".join(classes))
    sheets = {"real": "real.png", "synthetic": {}}
    for c in classes:
        pick = _sample([r for r in synthetic if r["label"] == c], per_class, seed, f"synthetic:{c}")
        name = f"synthetic_{c}.png"
        write_contact_sheet(out_dir / name, [r["path"] for r in pick], cols=8, thumb=64,
                            title=f"synthetic {c}: {len(pick)} of {sum(r['label'] == c for r in synthetic)}")
        sheets["synthetic"][c] = name
    return sheets


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")


def confusion_png(runs: list[dict], title: str, path: Path) -> None:
    """Row-normalised confusion matrix (counts summed over the given runs' seeds)."""
    classes = runs[0]["confusion_matrix"]["classes"]
    cm = np.sum([np.asarray(r["confusion_matrix"]["rows_actual_cols_predicted"]) for r in runs], axis=0)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = _figure()
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title}: % of each actual class", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def curves_png(histories: dict[str, list[dict]], path: Path) -> None:
    """Validation accuracy per epoch of every run, one colour per mix."""
    fig = _figure()
    ax = fig.add_subplot()
    mixes = sorted({run.rsplit("-seed", 1)[0] for run in histories})
    colours = {m: f"C{i % 10}" for i, m in enumerate(mixes)}
    seen = set()
    for run, hist in sorted(histories.items()):
        mix = run.rsplit("-seed", 1)[0]
        ax.plot([h["epoch"] for h in hist], [100 * h["val_accuracy"] for h in hist], "-o", ms=3, lw=1,
                color=colours[mix], alpha=0.8, label=None if mix in seen else mix)
        seen.add(mix)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Training curves (every mix and seed)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    _save(fig, path)


def cross_dataset_table(runs: dict[tuple[str, int], dict], mixes: Sequence[str], seeds: Sequence[int]) -> Optional[str]:
    """Mean accuracy per test set and their average, per mix (the thesis's table 5-9)."""
    first = runs.get((mixes[0], seeds[0]), {})
    if "test_sets" not in first:
        return None
    sets = list(first["test_sets"])
    lines = ["| Mix | " + " | ".join(sets) + " | Average |", "|---|" + "---:|" * (len(sets) + 1)]
    for mix in mixes:
        vals = {s: np.mean([runs[(mix, seed)]["test_sets"][s] for seed in seeds]) for s in sets}
        avg = np.mean([runs[(mix, seed)]["accuracy_avg"] for seed in seeds])
        lines.append(f"| {mix} | " + " | ".join(pct(vals[s]) for s in sets) + f" | {pct(avg)} |")
    return "\n".join(lines) + "\n"


def write_report(
    *,
    out: Path,
    image_dir: Path,
    mixes: Sequence[str],
    seeds: Sequence[int],
    baseline: str,
    classes: Sequence[str],
    real: list[dict],
    synthetic: list[dict],
    inputs: dict[str, Path],
    sheet_per_class: int = 32,
    seed: int = 0,
) -> dict:
    """Write the pictures into ``image_dir`` and ``REPORT.md`` to ``out``; return what was written.
    ``inputs``: the path of each of :data:`REPORT_INPUTS` (the stage's command line)."""
    i = {k: Path(v) for k, v in inputs.items()}
    summary_md = i["summary_table"].read_text(encoding="utf-8") if i["summary_table"].is_file() else None
    details = _read_json(i["summary_details"])
    if summary_md is None or details is None:
        raise DataError(f"{i['summary_table']} or {i['summary_details']} is missing: run the summarize stage first")
    runs = {}
    for mix in mixes:
        for s in seeds:
            r = _read_json(i["run_metrics"] / f"{mix}-seed{s}.json")
            if r is None:
                raise DataError(f"{i['run_metrics']}/{mix}-seed{s}.json is missing: run evaluate@{mix}-{s}")
            runs[(mix, s)] = r
    histories = {f"{mix}-seed{s}": [{"epoch": step, "val_accuracy": v} for step, v in curve]
                 for mix in mixes for s in seeds
                 if (curve := read_metric(i["histories"] / f"{mix}-seed{s}", "val_accuracy"))}  # DVCLive folders
    fidelity_md = i["fidelity_table"].read_text(encoding="utf-8") if i["fidelity_table"].is_file() else None
    qc = _read_json(i["qc_metrics"])
    prepare = _read_json(i["prepare_metrics"]) or {}
    generate = _read_json(i["generate_metrics"]) or {}
    m = i["summary_table"].parent  # the metrics folder: the segmentation and QC reports are linked there

    image_dir.mkdir(parents=True, exist_ok=True)
    sheets = contact_sheets(real, synthetic, classes, image_dir / "sheets", sheet_per_class, seed)
    most = max(mixes, key=lambda x: details["mixes"][x]["fake_pct"])
    confusion_png([runs[(baseline, s)] for s in seeds], f"{baseline} ({ratio_label(baseline)}), seeds summed",
                  image_dir / "confusion_baseline.png")
    confusion_png([runs[(most, s)] for s in seeds], f"{most} ({ratio_label(most)}), seeds summed",
                  image_dir / "confusion_most_synthetic.png")
    if histories:
        curves_png(histories, image_dir / "training_curves.png")

    rel = lambda p: Path(os.path.relpath(p, out.parent)).as_posix()  # noqa: E731
    base = details["mixes"][baseline]
    best = max(mixes, key=lambda x: details["mixes"][x]["accuracy_mean"])
    counts = prepare.get("counts", {})
    n_train = sum(counts.get("train", {}).values()) if counts else len(real)
    n_test = details.get("n_test")
    lines = [
        "# Results",
        "",
        "*Generated by the `report` stage from the metrics of this run (`dvc repro`); do not edit.*",
        "",
        "## Setup",
        "",
        f"Real data: {prepare.get('source', '?')}, classes {', '.join(classes)}; {n_train} training images"
        f"{'' if not counts else ', ' + str(sum(counts.get('val', {}).values())) + ' validation'}, "
        f"{n_test if n_test is not None else '?'} real test images. Synthetic data: {len(synthetic)} images from the "
        f"`{generate.get('backend', '?')}` generator"
        + (f" ({qc['n_kept']} of {qc['n_in']} kept by quality control)" if qc and qc.get("enabled") else "")
        + f". Mixes: {', '.join(f'{x} ({ratio_label(x)})' for x in mixes)}; training seeds {', '.join(map(str, seeds))}."
        + (f" {dup['total_dropped']} real images that were exact copies of an image of an earlier split were "
           f"dropped (prepare.duplicates: drop; per split {dup['dropped']})."
           if (dup := prepare.get("duplicates") or {}).get("total_dropped") else ""),
        "",
        "## Accuracy on the real test set",
        "",
        summary_md.strip(),
        "",
        f"The baseline {baseline} reaches {pct(base['accuracy_mean'])} %; the best mix is {best} "
        f"({pct(details['mixes'][best]['accuracy_mean'])} %, {details['mixes'][best]['delta_points']:+.2f} points).",
        "",
        f"![accuracy vs synthetic share]({rel(i['accuracy_plot'])})",
        "",
    ]
    cross = cross_dataset_table(runs, mixes, seeds)
    if cross:
        lines += ["## Cross-dataset accuracy", "",
                  "Mean accuracy (%) over seeds on each real test set ('test' is the main split) and their "
                  "unweighted average, as in the prompt-strategy study's table.", "", cross]
    fewshot_md = i["fewshot_table"]
    if fewshot_md.is_file():
        lines += ["## Few-shot: DA-Fusion, Real Guidance and standard augmentation", "",
                  "A linear probe on frozen ImageNet features per method, trained on k real images per class "
                  "(DA-Fusion and Real Guidance: each sample swapped with probability alpha for one of its own "
                  "image-to-image variants); tables from `fewshot_summarize`.", "",
                  fewshot_md.read_text(encoding="utf-8").strip(), "",
                  f"![few-shot accuracy vs examples per class]({rel(i['fewshot_plot'])})", ""]
    # a link, not the table: reading metrics/seg/ here would make `dvc repro report` run the whole
    # segmentation branch first (or, undeclared, copy a table of another run)
    lines += ["## Segmentation (study 5)", "",
              "The segmentation branch's results (mIoU of each model on each mix, mean ± half the interval "
              "across seeds in the source's Table 1 layout, then the seed-paired comparison with the baseline "
              f"and per-class IoU) are in [seg/summary.md]({rel(m / 'seg' / 'summary.md')}), written by "
              "`seg_summarize`.", ""]
    lines += ["## Fidelity of the synthetic set", ""]
    lines += [fidelity_md.strip() if fidelity_md else "(the fidelity stage has not run)", ""]
    if qc is not None:
        lines += ["## Quality control", ""]
        if qc.get("enabled"):
            by = ", ".join(f"{k}: {v}" for k, v in sorted(qc.get("dropped_by", {}).items())) or "none"
            lines += [f"{qc['n_dropped']} of {qc['n_in']} synthetic images dropped ({by}); details and the dropped "
                      f"images in [qc/report.md]({rel(m / 'qc' / 'report.md')}).", ""]
            if qc.get("n_near_test"):
                lines += [f"**Leakage check: {qc['n_near_test']} kept synthetic images near-copy a real test image** "
                          "(pHash; reported, not dropped): the mixes that hold them may score too high on the test "
                          "split; they are listed in the QC report.", ""]
        else:
            lines += ["Off (`qc.enabled: false`): every synthetic image was used, as in the source studies.", ""]
    lines += ["## Confusion matrices", "",
              f"![confusion {baseline}]({rel(image_dir / 'confusion_baseline.png')}) "
              f"![confusion {most}]({rel(image_dir / 'confusion_most_synthetic.png')})", ""]
    if histories:
        lines += ["## Training curves", "", f"![training curves]({rel(image_dir / 'training_curves.png')})", ""]
    lines += ["## Images", "", "Real training images (one row per class):", "",
              f"![real]({rel(image_dir / 'sheets' / sheets['real'])})", "", "Synthetic images per class:", ""]
    for c, name in sheets["synthetic"].items():
        lines += [f"**{c}**", "", f"![synthetic {c}]({rel(image_dir / 'sheets' / name)})", ""]
    with atomic_open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return {"report": str(out), "sheets": sheets, "figures": sorted(p.name for p in image_dir.glob("*.png"))}


# every metrics file the report reads, by the name it has below the metrics folder
# what the report reads, by its command-line option (dvc.yaml gives the paths)
REPORT_INPUTS = ("summary_table", "summary_details", "accuracy_plot", "fidelity_table", "qc_metrics",
                 "prepare_metrics", "generate_metrics", "run_metrics", "histories", "fewshot_table", "fewshot_plot")


def report_stage(params: Params, *, real: Input, classes: Input, synthetic: Input, summary_table: Input,
                 summary_details: Input, accuracy_plot: Input, fidelity_table: Input, qc_metrics: Input,
                 prepare_metrics: Input, generate_metrics: Input, run_metrics: Input, histories: Input,
                 fewshot_table: Input, fewshot_plot: Input, out: Output, figures: Output) -> None:
    """Stage report: metrics/REPORT.md, a results section written from this run's metrics, with
    contact sheets of the real and synthetic images (the ones the mixes use), confusion
    matrices and training curves."""
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest

    inputs = {"summary_table": summary_table, "summary_details": summary_details, "accuracy_plot": accuracy_plot,
              "fidelity_table": fidelity_table, "qc_metrics": qc_metrics, "prepare_metrics": prepare_metrics,
              "generate_metrics": generate_metrics, "run_metrics": run_metrics, "histories": histories,
              "fewshot_table": fewshot_table, "fewshot_plot": fewshot_plot}
    written = write_report(
        out=Path(out), image_dir=Path(figures), mixes=params.mix.names, seeds=params.train.seeds,
        baseline=params.summarize.baseline, classes=read_classes(classes), real=read_manifest(real),
        synthetic=read_manifest(synthetic), inputs=inputs,
        sheet_per_class=params.report.sheet_per_class, seed=params.report.seed,
    )
    print(f"wrote {written['report']} with {len(written['figures'])} figures and "
          f"{1 + len(written['sheets']['synthetic'])} contact sheets")
