"""Classifier training and evaluation on a small, learnable image set (CPU)."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from shipped_params import section
from synthmix.classify.evaluate import evaluate_classifier
from synthmix.classify.models import build_model
from synthmix.classify.train import random_crop_flip, train_classifier
from synthmix.core.checkpoint import checkpoint_sha256
from synthmix.core.errors import MissingAssetError
from synthmix.data.images import load_images
from synthmix.data.manifest import file_sha256

CLASSES = ["dark", "light"]


def make_set(root, n_per_class, seed, source="real"):
    """Grey squares: 'dark' images are darker than 'light' ones, with noise. Easy to learn."""
    rng = np.random.default_rng(seed)
    recs = []
    for label, level in (("dark", 60), ("light", 190)):
        for i in range(n_per_class):
            arr = np.clip(rng.normal(level, 25, (20, 20)), 0, 255).astype(np.uint8)
            path = root / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr, "L").save(path)
            recs.append({"path": str(path), "label": label, "source": source, "sha256": file_sha256(path)})
    return recs


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return make_set(root / "train", 24, 0), make_set(root / "val", 8, 1), make_set(root / "test", 16, 2)


def params(**kw):
    base = dict(seeds=[0], epochs=3, batch_size=16, input_size=16, lr=3e-3)
    return section("train", **{**base, **kw})


def test_grey_images_become_three_channels_at_input_size(sets):
    x, y = load_images(sets[0][:3], CLASSES, 16)
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], x[:, 1]) and y.tolist() == [0, 0, 0]


def test_train_keeps_best_epoch_and_evaluates(sets, tmp_path):
    train, val, test = sets
    ckpt = tmp_path / "m"
    result = train_classifier(params(), 0, train, val, CLASSES, ckpt)
    best = max(h["val_accuracy"] for h in result["history"])
    assert result["best_val_accuracy"] == best
    first_best = next(h["epoch"] for h in result["history"] if h["val_accuracy"] == best)
    assert result["best_epoch"] == first_best
    assert result["n_train"] == 48 and sorted(p.name for p in ckpt.iterdir()) == ["meta.json", "tensors.safetensors"]
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["classes"] == CLASSES and meta["best_epoch"] == first_best and "train_seconds" not in meta

    out = evaluate_classifier(ckpt, test, tmp_path / "pred.csv", batch_size=7, device="cpu")
    assert out["accuracy"] >= 0.9  # the task is easy; a broken pipeline scores ~0.5
    assert out["n_test"] == 32
    cm = out["confusion_matrix"]["rows_actual_cols_predicted"]
    assert sum(map(sum, cm)) == 32 and sum(cm[0]) == 16
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))
    assert len(rows) == 32 and rows[0]["actual"] == "dark"
    agree = np.mean([r["actual"] == r["predicted"] for r in rows])
    assert agree == pytest.approx(out["accuracy"])


def test_training_is_reproducible(sets, tmp_path):
    train, val, _ = sets
    a = train_classifier(params(epochs=1), 5, train, val, CLASSES, tmp_path / "a")
    b = train_classifier(params(epochs=1), 5, train, val, CLASSES, tmp_path / "b")
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    # the checkpoint depends only on the inputs: the same bytes twice (timings are metrics only)
    assert checkpoint_sha256(tmp_path / "a") == checkpoint_sha256(tmp_path / "b")


def test_augmentation_keeps_shape_and_is_seeded():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_missing_weights_file_names_the_option(tmp_path):
    with pytest.raises(MissingAssetError, match="train.weights = .*does not exist"):
        build_model("resnet18", 2, weights=str(tmp_path / "nope.safetensors"))


def test_train_stage_logs_epochs_with_dvclive(sets, tmp_path, monkeypatch):
    """The train stage as dvc.yaml runs it: a DVCLive folder with the run summary and one TSV per
    per-epoch value (step = epoch, no timestamps), and nothing else of DVCLive's."""
    import json

    import yaml

    from shipped_params import PARAMS_YAML, shipped
    from synthmix.classify.train import train_stage
    from synthmix.config import load_params
    from synthmix.core.live import read_metric
    from synthmix.data.manifest import write_manifest
    from synthmix.runner import stage_parser

    train, val, _ = sets
    raw = shipped()
    raw = {**raw, "device": "cpu", "train": {**raw["train"], "seeds": [0], "epochs": 2, "batch_size": 16,
                                             "input_size": 16, "lr": 3e-3}}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    write_manifest(tmp_path / "data/mixes/pct0.jsonl", train)
    write_manifest(tmp_path / "data/real/val.jsonl", val)
    (tmp_path / "data/real/classes.json").write_text(json.dumps({"classes": CLASSES}))
    cmd = yaml.safe_load((PARAMS_YAML.parent / "dvc.yaml").read_text())["stages"]["train"]["cmd"]
    cmd = cmd.replace("${item.mix}", "pct0").replace("${item.seed}", "0").split()[2:]
    args = vars(stage_parser(train_stage).parse_args(cmd))
    train_stage(load_params(args.pop("params")), **args)

    run = tmp_path / "metrics/train/pct0-seed0"
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "metrics.json", *(f"plots/metrics/{k}.tsv" for k in ("train_accuracy", "train_loss", "val_accuracy"))]
    summary = json.loads((run / "metrics.json").read_text())
    # wall-clock values live in the undeclared timings file, never in the DVC-hashed folder
    assert not {"seconds", "train_seconds", "train_images_per_second", "device"} & set(summary)
    timings = json.loads((tmp_path / "metrics/timings/train/pct0-seed0.json").read_text())
    assert timings["train_seconds"] > 0 and len(timings["epoch_seconds"]) == 2 and timings["device"] == "cpu"
    assert summary["mix"] == "pct0" and summary["seed"] == 0 and summary["step"] == 2 and summary["n_train"] == 48
    curve = read_metric(run, "val_accuracy")
    assert [s for s, _ in curve] == [1, 2] and summary["val_accuracy"] == curve[-1][1]
    assert summary["best_val_accuracy"] == max(v for _, v in curve)
    assert (run / "plots/metrics/train_loss.tsv").read_text().splitlines()[0].split("\t") == ["step", "train_loss"]
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / ".dvc").exists()

