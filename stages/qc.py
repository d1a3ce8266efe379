#!/usr/bin/env python
"""Stage qc: drop synthetic images of the wrong class and near-duplicates before mixing.

Off by default (qc.enabled: false): then every image passes and no model is trained. Writes
data/qc/manifest.jsonl (the kept images, read by every mix@ stage), data/qc/dropped.jsonl,
metrics/qc.json (counts) and metrics/qc/{report.md,dropped.png,details.json}.
"""

import os
from pathlib import Path

from synthmix.atomic import read_json, write_json, write_text
from synthmix.cli import run_stage, stage_parser
from synthmix.contact import write_contact_sheet
from synthmix.manifest import read_manifest, write_manifest
from synthmix.params import load_params
from synthmix.qc import caption, markdown_report, run_qc


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--synthetic", default="data/synthetic/manifest.jsonl")
    parser.add_argument("--real", default="data/real/train.jsonl")
    parser.add_argument("--val", default="data/real/val.jsonl")
    parser.add_argument("--classes", default="data/real/classes.json")
    parser.add_argument("--out-dir", default="data/qc")
    parser.add_argument("--metrics", default="metrics/qc.json")
    parser.add_argument("--report-dir", default="metrics/qc")
    args = parser.parse_args()
    params = load_params(args.params).qc
    classes = read_json(args.classes)["classes"]
    out_dir, report_dir = Path(args.out_dir), Path(args.report_dir)
    synthetic = read_manifest(args.synthetic)
    real = read_manifest(args.real) if params.enabled else []
    val = read_manifest(args.val) if params.enabled else []
    kept, dropped, stats = run_qc(params, synthetic, real, val, classes, out_dir)

    sheet = None
    if params.enabled:
        sheet = "dropped.png"
        shown = dropped[: params.sheet_max]
        title = f"dropped by quality control: {len(dropped)}" + (f" (first {len(shown)})" if len(shown) < len(dropped) else "")
        write_contact_sheet(report_dir / sheet, [d["path"] for d in shown], [caption(d) for d in shown],
                            cols=8, thumb=80, title=title)
    elif (report_dir / "dropped.png").exists():
        (report_dir / "dropped.png").unlink()
    write_text(report_dir / "report.md", markdown_report(stats, dropped, params, sheet, report_dir.resolve()))
    for d in dropped:  # the matched image, relative to the manifest like every path in it
        if "of" in d["qc_reason"]:
            d["qc_reason"]["of"] = os.path.relpath(d["qc_reason"]["of"], out_dir.resolve())
    write_manifest(out_dir / "manifest.jsonl", kept)
    write_manifest(out_dir / "dropped.jsonl", dropped)
    # metrics/qc.json: the counts only (dvc exp show columns); everything else in the report dir
    write_json(args.metrics, {k: stats[k] for k in ("enabled", "n_in", "n_kept", "n_dropped", "dropped_by")})
    write_json(report_dir / "details.json", stats)
    print(f"qc: {stats['n_kept']} of {stats['n_in']} synthetic images kept ({stats['n_dropped']} dropped)")


if __name__ == "__main__":
    run_stage(main)
