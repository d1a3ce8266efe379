"""End to end: a swap mix (grrN), and an lrrN mix without and then with image-to-image variants
(generate.mode img2img), through `dvc repro` in a temporary repository on tiny overrides."""

from __future__ import annotations

import copy
import json

import pytest

from dvc_repo import TINY, make_repo, require_fashion_mnist

pytestmark = pytest.mark.e2e


def test_grr_mix_trains_with_swaps_and_the_summary_reports_mean_per_class_accuracy(tmp_path):
    require_fashion_mnist()
    over = copy.deepcopy(TINY)
    over["mix"] = {"names": ["pct0", "grr50"]}
    over["train"] = {**over["train"], "seeds": [0], "epochs": 2}
    over["summarize"] = {"baseline": "pct0"}
    repo = make_repo(tmp_path, over)
    ran = repo.repro("summarize")
    assert {"mix@grr50", "train@grr50-0", "evaluate@grr50-0", "summarize"} <= ran

    records = [json.loads(line) for line in (repo.root / "data/mixes/grr50.jsonl").read_text().splitlines()]
    roles = [r["role"] for r in records]
    assert roles.count("real") == 3 * 12 and roles.count("candidate") == 3 * 12
    train = json.loads((repo.root / "metrics/train/grr50-seed0/metrics.json").read_text())
    assert train["n_train"] == 36 and train["n_swap_candidates"] == 36 and train["swap_probability"] == 0.5
    assert 0.0 < train["swap_rate"] < 1.0
    assert (repo.root / "metrics/train/grr50-seed0/plots/metrics/swap_rate.tsv").is_file()
    run = json.loads((repo.root / "metrics/cls/grr50-seed0.json").read_text())
    assert 0.0 <= run["mean_per_class_accuracy"] <= 1.0
    summary = json.loads((repo.root / "metrics/summary.json").read_text())
    assert list(summary)[:2] == ["accuracy", "mean_per_class_accuracy"]
    assert set(summary["mean_per_class_accuracy"]) == {"pct0", "grr50"}
    assert "| grr50 | swap 50 % (class) |" in (repo.root / "metrics/summary.md").read_text()

    # lrr needs image-to-image variants, which the text-to-image DDPM does not make
    repo.set_params(mix={"names": ["pct0", "lrr50"]})
    proc = repo.run("dvc", "repro", "mix@lrr50", check=False)
    assert proc.returncode != 0 and "lrr mixes need image-to-image variants" in proc.stdout + proc.stderr

    # with generate.mode img2img, each real training image gets its own variants (SDEdit)
    repo.set_params(generate={"mode": "img2img", "img2img": {"per_image": 2}})
    ran = repo.repro("train@lrr50-0")
    assert {"generate", "mix@lrr50", "train@lrr50-0"} <= ran
    records = [json.loads(line) for line in (repo.root / "data/mixes/lrr50.jsonl").read_text().splitlines()]
    reals = {r["sha256"] for r in records if r["role"] == "real"}
    candidates = [r for r in records if r["role"] == "candidate"]
    assert len(reals) == 36 and len(candidates) == 2 * 36
    assert {c["source_sha256"] for c in candidates} == reals
    assert all(c["strength"] in (0.25, 0.5, 0.75, 1.0) and not c["source_path"].startswith("/") for c in candidates)
    train = json.loads((repo.root / "metrics/train/lrr50-seed0/metrics.json").read_text())
    assert train["n_train"] == 36 and train["n_swap_candidates"] == 72 and 0.0 < train["swap_rate"] < 1.0
