"""End to end: qc -> mixes, fidelity (real features cached), cross-dataset evaluation, REPORT.md
and `dvc plots show`, in a temporary repository on tiny overrides."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from dvc_repo import TINY, make_repo, require_fashion_mnist
from synthmix.quality.inception import CONVERTED_NAME, weights_dir

pytestmark = pytest.mark.e2e


def _folder_test_set(root):
    """Fashion-MNIST test photos under other folder names, plus a class the experiment lacks."""
    from synthmix.data.sources import load_fashion_mnist_debian

    src = load_fashion_mnist_debian("/usr/share/datasets/fashion-mnist")
    labels = src.labels("test")
    for folder, k in (("Tee", 0), ("Pants", 1), ("Sneakers", 7), ("Bag", 8)):
        (root / folder).mkdir(parents=True)
        for i in np.flatnonzero(labels == k)[:10]:
            src.load("test", int(i)).save(root / folder / f"{i}.png")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    require_fashion_mnist()
    if not (weights_dir() / CONVERTED_NAME).is_file():
        pytest.skip("FID Inception weights missing: run `bash scripts/setup.sh`")
    base = tmp_path_factory.mktemp("quality")
    _folder_test_set(base / "foldertest")
    over = copy.deepcopy(TINY)
    over["mix"] = {"names": ["pct0", "pct100"]}
    over["train"] = {**over["train"], "seeds": [0]}
    over["summarize"] = {"baseline": "pct0"}
    over["qc"] = {"enabled": True, "epochs": 1, "input_size": 16, "confidence": 0.5}
    over["evaluate"] = {"extra_test_sets": [{
        "name": "folder", "source": "image_folder", "root": str(base / "foldertest"),
        "class_map": {"Tee": "t_shirt_top", "Pants": "trouser", "sneakers": "sneaker"},
    }]}  # fmt: skip
    return make_repo(base, over, file_deps={"evaluate.extra_test_sets": str(base / "foldertest")})


def test_quality_stages_report_and_plots(repo):
    ran = repo.repro("report")
    assert {"qc", "fidelity_real", "fidelity", "report", "mix@pct0", "evaluate@pct100-0"} <= ran
    root = repo.root

    qc = json.loads((root / "metrics/qc.json").read_text())
    assert qc["enabled"] and qc["n_in"] == 36 and qc["n_kept"] + qc["n_dropped"] == 36
    kept = (root / "data/qc/manifest.jsonl").read_text().splitlines()
    assert len(kept) == qc["n_kept"]
    assert (root / "metrics/qc/report.md").read_text().startswith("# Quality control")
    assert (root / "metrics/qc/dropped.png").read_bytes()[:4] == b"\x89PNG"
    # the leakage check against the real test split ran (report only: counted, nothing dropped for it)
    assert "n_near_test" in qc and "## Near-copies of real test images" in (root / "metrics/qc/report.md").read_text()
    # checkpoints and features: safetensors + JSON folders, no pickles, no timings in them
    for folder in ("data/qc/classifier", "data/features/real_train", "models/cls/pct0-seed0"):
        assert sorted(p.name for p in (root / folder).iterdir()) == ["meta.json", "tensors.safetensors"], folder
        assert "seconds" not in (root / folder / "meta.json").read_text(), folder
    # the mixes draw their synthetic images from the kept set only
    kept_paths = {json.loads(line)["path"].split("synthetic/", 1)[1] for line in kept}
    mix = [json.loads(line) for line in (root / "data/mixes/pct100.jsonl").read_text().splitlines()]
    assert mix and {r["path"].split("synthetic/", 1)[1] for r in mix} <= kept_paths

    fid = json.loads((root / "metrics/fidelity.json").read_text())
    assert set(fid) == {"generated", "kept"}
    assert fid["generated"]["fid"] > 0 and fid["generated"]["inception_score"] is None
    details = json.loads((root / "metrics/fidelity_details.json").read_text())
    gen = details["sets"]["generated"]
    assert gen["overall"]["n_synthetic"] == 24 and gen["overall"]["n_real"] == 24  # fidelity.max_per_class 8
    assert set(gen["per_class"]) == {"t_shirt_top", "trouser", "sneaker"}
    assert "unavailable" in gen["inception_score"]

    run = json.loads((root / "metrics/cls/pct0-seed0.json").read_text())
    assert set(run["test_sets"]) == {"test", "folder"}
    assert run["extra_test_sets"]["folder"]["n_test"] == 30  # Bag is not mapped
    assert run["extra_test_sets"]["folder"]["class_map"] == {"Pants": "trouser", "Sneakers": "sneaker", "Tee": "t_shirt_top"}
    assert run["accuracy_avg"] == pytest.approx((run["accuracy"] + run["extra_test_sets"]["folder"]["accuracy"]) / 2, abs=1e-5)
    summary = json.loads((root / "metrics/summary.json").read_text())
    assert set(summary["accuracy_avg"]) == {"pct0", "pct100"}

    report = (root / "metrics/REPORT.md").read_text()
    for part in ("# Results", "## Accuracy on the real test set", "## Cross-dataset accuracy",
                 "## Fidelity of the synthetic set", "| generated | **all** | 24 | 24 |", "## Quality control",
                 "report/sheets/real.png", "report/sheets/synthetic_trouser.png", "report/confusion_baseline.png"):
        assert part in report, part
    for png in ("sheets/real.png", "sheets/synthetic_sneaker.png", "confusion_baseline.png",
                "confusion_most_synthetic.png", "training_curves.png"):
        assert (root / "metrics/report" / png).read_bytes()[:4] == b"\x89PNG", png

    shown = repo.run("dvc", "plots", "show", "--json")
    assert shown.returncode == 0
    text = shown.stdout
    for plot in ("metrics/report/sheets/real.png", "metrics/accuracy_vs_fake.csv", "confusion"):
        assert plot in text, plot
    repo.commit("quality run")


def test_a_new_synthetic_set_reuses_the_real_features(repo):
    repo.set_params(generate={"seed": 1})
    ran = repo.repro("fidelity")
    assert {"generate", "qc", "fidelity"} <= ran
    assert "fidelity_real" not in ran and "prepare" not in ran
