"""The segmentation branch through `dvc repro` in a temporary repository, on tiny overrides.

`dvc repro seg_summarize` builds exactly the branch's stages (matrix names such as
`seg_train@rep25-bisenetv2-0`), with the FreeMask filter (seg_filter) on, writes the metrics,
overlay pictures and summary table DVC declares, and a post-processing param change re-runs
label generation and what follows it, not the real data, the label DDPM or SPADE.
"""

from __future__ import annotations

import json

import pytest

from dvc_repo import TINY, make_repo, require_fashion_mnist

pytestmark = pytest.mark.e2e

MIXES, MODELS, SEEDS = TINY["seg_mix"]["names"], TINY["seg_train"]["models"], TINY["seg_train"]["seeds"]
RUNS = [(m, a, s) for m in MIXES for a in MODELS for s in SEEDS]


def test_seg_branch_repro_and_param_change(tmp_path):
    require_fashion_mnist()
    repo = make_repo(tmp_path, {**TINY, "seg_filter": {**TINY["seg_filter"], "enabled": True}})
    ran = repo.repro("seg_summarize")
    expected = {"seg_prepare", "seg_train_labels", "seg_generate_labels", "seg_train_spade", "seg_generate_images",
                "seg_filter", "seg_summarize"} | {f"seg_mix@{m}" for m in MIXES}  # fmt: skip
    expected |= {f"{stage}@{m}-{a}-{s}" for stage in ("seg_train", "seg_evaluate") for m, a, s in RUNS}
    assert ran == expected

    root = repo.root
    post = json.loads((root / "metrics/seg/postprocess.json").read_text())
    assert post["maps"] == TINY["seg_generate_labels"]["count"] and post["image_size"] == 32
    assert {"ramp_pixels", "island_pixels", "islands_removed"} <= set(post)
    pairs = [json.loads(x) for x in (root / "data/seg/synthetic/pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 4 and all(p["mask"].startswith("../synthetic_labels/masks/") for p in pairs)
    freemask = json.loads((root / "metrics/seg/filter.json").read_text())
    assert freemask["enabled"] and freemask["pairs_in"] == freemask["pairs_out"] == 4
    assert set(freemask["ignored_per_class"]) == {"background", "trouser", "sneaker", "bag"}
    assert (root / "metrics/seg/filter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mix = [json.loads(x) for x in (root / "data/seg/mixes/rep25.jsonl").read_text().splitlines()]
    assert len(mix) == 16 and sum(r["source"] == "synthetic" for r in mix) == 4
    for m, a, s in RUNS:
        run = f"{m}-{a}-seed{s}"
        metrics = json.loads((root / f"metrics/seg/eval/{run}.json").read_text())
        assert 0 <= metrics["miou"] <= 1 and len(metrics["iou"]) == 4 and metrics["n_test"] == 4
        assert (root / f"metrics/seg/overlay/{run}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((root / "metrics/seg/summary.json").read_text())
    assert set(summary["miou"]) == set(MODELS) and all(set(v) == set(MIXES) for v in summary["miou"].values())
    table = (root / "metrics/seg/summary.md").read_text()
    assert "| bisenetv2 | rep25 | 4 / 16 |" in table and "| ppliteseg_t | rep0 | 0 / 16 |" in table, table
    repo.commit("seg run")

    repo.set_params(seg_generate_labels={"min_island_size": 9})
    status = json.loads(repo.run("dvc", "status", "--json").stdout)
    assert "seg_generate_labels" in status
    assert not {"seg_prepare", "seg_train_labels", "seg_train_spade"} & set(status)
