"""The whole DVC pipeline in a temporary git repository, on tiny parameter overrides.

What a user relies on: `dvc repro` builds everything from the shipped dvc.yaml; a second
`dvc repro` runs nothing; changing `train.lr` re-runs only training, evaluation and the
summary; `dvc exp run -S` / `dvc exp show --json` compare runs; `dvc push` / `dvc pull`
round-trip through a remote. Git and DVC configuration are isolated from the user's.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from dvc_repo import TINY, make_repo, require_fashion_mnist

pytestmark = pytest.mark.e2e

MIXES, SEEDS = TINY["mix"]["names"], TINY["train"]["seeds"]
SHOTS, TRIALS = TINY["fewshot"]["shots"], TINY["fewshot"]["trials"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    require_fashion_mnist()
    return make_repo(tmp_path_factory.mktemp("e2e"), TINY)


def test_repro_builds_every_stage(repo):
    ran = repo.repro()
    expected = {"prepare", "train_generator", "generate", "summarize"}
    expected |= {"hyponet"}
    expected |= {"train_lora", "train_textual_inversion", "erase"}  # ddpm: nothing to train, index.json only
    expected |= {"qc", "fidelity_real", "fidelity", "report"}
    expected |= {f"mix@{m}" for m in MIXES}
    expected |= {f"{s}@{m}-{seed}" for s in ("train", "evaluate") for m in MIXES for seed in SEEDS}
    # the few-shot branch (study 4, DA-Fusion)
    expected |= {"fewshot_features", "fewshot_summarize"}
    expected |= {f"{s}@{k}-{t}" for s in ("fewshot_variants", "fewshot_train") for k in SHOTS for t in TRIALS}
    # the segmentation branch (study 5)
    seg_mixes, seg_models, seg_seeds = TINY["seg_mix"]["names"], TINY["seg_train"]["models"], TINY["seg_train"]["seeds"]
    expected |= {"seg_prepare", "seg_train_labels", "seg_generate_labels", "seg_train_spade",
                 "seg_generate_images", "seg_filter", "seg_summarize"}
    expected |= {f"seg_mix@{m}" for m in seg_mixes}
    expected |= {f"{s}@{m}-{a}-{seed}" for s in ("seg_train", "seg_evaluate")
                 for m in seg_mixes for a in seg_models for seed in seg_seeds}
    assert ran == expected

    summary = json.loads((repo.root / "metrics/summary.json").read_text())
    assert set(summary["accuracy"]) == set(MIXES)
    for run in (f"{m}-seed{s}" for m in MIXES for s in SEEDS):
        metrics = json.loads((repo.root / f"metrics/cls/{run}.json").read_text())
        assert metrics["n_test"] == 60 and 0 <= metrics["accuracy"] <= 1
    mix = [json.loads(line) for line in (repo.root / "data/mixes/pct50.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "synthetic" for r in mix) == 3 * 6  # 50 % of 12 per class
    table = (repo.root / "metrics/summary.md").read_text()
    for row in ("| pct0 | 0:100 |", "| pct50 | 50:50 |", "| pct100 | 100:0 |", "| aug50 | real + 50 % |"):
        assert row in table, table
    assert (repo.root / "metrics/accuracy_vs_fake.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    fewshot = json.loads((repo.root / "metrics/fewshot.json").read_text())
    assert set(fewshot) == {f"k{k}" for k in SHOTS}
    assert set(fewshot["k1"]) == {"baseline", "real_guidance", "dafusion"}
    assert 0 <= fewshot["k2"]["dafusion"]["mean_per_class_accuracy_mean"] <= 1
    variants = [json.loads(line) for line in (repo.root / "data/fewshot/k2-t0/dafusion/manifest.jsonl").read_text().splitlines()]
    reals = [json.loads(line) for line in (repo.root / "data/fewshot/k2-t0/real.jsonl").read_text().splitlines()]
    assert len(reals) == 3 * 2 and len(variants) == 2 * len(reals)  # img2img.per_image = 2
    assert {v["source_sha256"] for v in variants} == {r["sha256"] for r in reals}
    assert "## Few-shot" in (repo.root / "metrics/REPORT.md").read_text()
    repo.commit("first run")


def test_report_fidelity_and_plots_render(repo, tmp_path):
    """The default graph's report, fidelity and QC outputs exist, and `dvc plots show` renders them."""
    root = repo.root
    report = (root / "metrics/REPORT.md").read_text()
    assert "## Fidelity of the synthetic set" in report and "| generated | **all** |" in report
    fid = json.loads((root / "metrics/fidelity.json").read_text())
    assert set(fid) == {"generated"} and fid["generated"]["fid"] > 0  # qc is off: no "kept" set
    assert json.loads((root / "metrics/qc.json").read_text())["n_dropped"] == 0
    for png in ("sheets/real.png", "confusion_baseline.png", "training_curves.png"):
        assert (root / "metrics/report" / png).read_bytes()[:4] == b"\x89PNG", png
    out = tmp_path / "plots"
    repo.run("dvc", "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "accuracy_vs_fake.csv" in html and "sheets/real.png" in html


def test_second_repro_runs_nothing(repo):
    start = time.perf_counter()
    assert repo.repro() == set()
    print(f"no-change dvc repro: {time.perf_counter() - start:.1f} s")
    assert "up to date" in repo.run("dvc", "status").stdout.lower()


def test_lr_change_reruns_only_training_and_after(repo):
    repo.set_params(train={"lr": 3e-3})
    ran = repo.repro()
    trains = {f"train@{m}-{s}" for m in MIXES for s in SEEDS}
    assert trains <= ran
    assert ran <= trains | {f"evaluate@{m}-{s}" for m in MIXES for s in SEEDS} | {"summarize", "report"}
    repo.commit("lr 3e-3")


def test_fewshot_classifier_change_reuses_the_cached_variants(repo):
    repo.set_params(fewshot={"classifier": {"lr": 3e-4}})
    ran = repo.repro()
    trains = {f"fewshot_train@{k}-{t}" for k in SHOTS for t in TRIALS}
    assert trains <= ran <= trains | {"fewshot_summarize", "report"}  # no variant is generated again
    repo.commit("fewshot lr 3e-4")


def test_exp_run_and_show(repo):
    repo.run("dvc", "exp", "run", "-S", "train.epochs=2", "-n", "two-epochs")
    shown = json.loads(repo.run("dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "two-epochs" in text
    # Every mix's accuracy appears as a metric of the experiment.
    for mix in MIXES:
        assert f'"{mix}"' in text
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    assert exps, "dvc exp show lists no experiment"


def test_push_pull_round_trip(repo, tmp_path):
    remote = tmp_path / "remote"
    repo.run("dvc", "remote", "add", "--local", "-d", "store", str(remote))
    repo.run("dvc", "push")
    manifest = repo.root / "data/synthetic/manifest.jsonl"
    before = manifest.read_bytes()
    shutil.rmtree(repo.root / "data")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    repo.run("dvc", "pull")
    assert manifest.read_bytes() == before
    assert "up to date" in repo.run("dvc", "status").stdout.lower()


def test_invalid_params_stop_the_stage_with_a_clear_message(repo):
    repo.set_params(train={"lr": -1})
    proc = repo.run(*repo.stage_cmd("train", mix="pct0", seed="0"), check=False)
    assert proc.returncode == 2
    assert "train.lr = -1" in proc.stderr and "greater than 0" in proc.stderr
    assert "Traceback" not in proc.stderr
