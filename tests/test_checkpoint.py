"""Checkpoints and feature files: safetensors + JSON, never unpickled; only what the inputs determine."""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np
import pytest
import torch
import torchvision

from shipped_params import section
from synthmix.classify.models import CHECKPOINT_FORMAT, load_classifier
from synthmix.core.checkpoint import (
    META,
    TENSORS,
    checkpoint_sha256,
    load_checkpoint,
    save_checkpoint,
)
from synthmix.core.errors import DataError, MissingAssetError
from synthmix.quality.fidelity import FEATURES_FORMAT, load_features, save_features
from synthmix.segmentation import spade as spade_mod
from synthmix.segmentation import train as seg_train_mod


class Payload:
    """Unpickling this touches MARKER: proof that a loader executed a pickle."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _classifier(folder):
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    save_checkpoint(folder, model.state_dict(), {"format": CHECKPOINT_FORMAT, "arch": "resnet18", "classes": ["a", "b"],
                                                 "input_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3,
                                                 "best_epoch": 1, "val_accuracy": 0.5})  # fmt: skip


def _spade(folder):
    params = section("seg_train_spade", ngf=8, ndf=8, spade_hidden=8, z_dim=8, steps=2, batch_size=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (4, 32, 32), dtype=np.uint8)
    return spade_mod.train_spade(params, images, masks, 3, folder, "cpu", show_progress=False)


def _segmenter(folder):
    params = section("seg_train", epochs=1, batch_size=4)
    rng = np.random.default_rng(0)
    pairs = (rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, (4, 32, 32), dtype=np.uint8))
    return seg_train_mod.train_segmenter(params, "linknet", 0, pairs, pairs, 3, 255, folder, torch.device("cpu"),
                                         extra={"mix": "rep0", "synthetic_pairs": 0})  # fmt: skip


def _features(folder):
    feats = {"format": FEATURES_FORMAT, "features": torch.randn(3, 4, dtype=torch.float64), "logits": None,
             "labels": ["a", "b", "a"], "sha256": ["x", "y", "z"], "paths": [str(folder.parent / f"{i}.png") for i in range(3)],
             "classes": ["a", "b"], "weights": "converted", "image_size": 32}  # fmt: skip
    save_features(folder, feats)


# kind -> (write a valid file, load it, the stage named in errors)
KINDS = {
    "classifier": (_classifier, lambda p: load_classifier(p, torch.device("cpu"), "train@pct0-0"), "train@pct0-0"),
    "qc_classifier": (_classifier, lambda p: load_classifier(p, torch.device("cpu"), "qc"), "qc"),
    "spade": (_spade, spade_mod.load_spade, "seg_train_spade"),
    "segmenter": (_segmenter, lambda p: seg_train_mod.load_segmenter(p, torch.device("cpu"), "seg_train@rep0-linknet-0"),
                  "seg_train@rep0-linknet-0"),
    "features": (_features, load_features, "fidelity_real"),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for kind, (write, _, _) in KINDS.items():
        folder = root / kind
        write(folder)
        out[kind] = folder
    return out


def test_round_trip_and_layout(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "n": torch.tensor(3)}
    save_checkpoint(tmp_path / "c", tensors, {"format": "x/1", "nested": {"a": [1, 2]}})
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [META, TENSORS]
    got, meta = load_checkpoint(tmp_path / "c", "x/1", "some_stage")
    assert meta == {"format": "x/1", "nested": {"a": [1, 2]}}
    assert torch.equal(got["w"], tensors["w"]) and torch.equal(got["n"], tensors["n"])
    with pytest.raises(DataError, match=r"format 'x/1', expected 'y/1'.*dvc repro -f some_stage"):
        load_checkpoint(tmp_path / "c", "y/1", "some_stage")
    with pytest.raises(MissingAssetError, match="dvc repro some_stage"):
        load_checkpoint(tmp_path / "nowhere", "x/1", "some_stage")
    # the same content twice: the same bytes, the same hash
    save_checkpoint(tmp_path / "d", tensors, {"format": "x/1", "nested": {"a": [1, 2]}})
    assert checkpoint_sha256(tmp_path / "c") == checkpoint_sha256(tmp_path / "d")


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_loads(written, kind):
    KINDS[kind][1](written[kind])


@pytest.mark.parametrize("how", ["pickle", "torch_save", "legacy_file"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_pickle_in_place_of_a_checkpoint_is_refused_never_run(written, tmp_path, kind, how):
    _, load, stage = KINDS[kind]
    marker = tmp_path / "unpickled"
    target = tmp_path / kind
    if how == "legacy_file":  # an old .pt pickle where the folder should be
        target.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
        bad = target
    else:  # a valid meta.json, the tensors replaced by a pickle
        target.mkdir()
        (target / META).write_bytes((written[kind] / META).read_bytes())
        bad = target / TENSORS
        if how == "pickle":
            bad.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
        else:
            torch.save({"state_dict": Payload(marker)}, bad)
    with pytest.raises(DataError) as err:
        load(target)
    msg = str(err.value)
    assert str(bad) in msg and f"dvc repro -f {stage}" in msg
    assert not marker.exists()


def test_trained_checkpoints_hold_no_timings_and_repeat_byte_for_byte(written, tmp_path):
    result = _spade(tmp_path / "spade2")
    assert result["train_seconds"] > 0 and result["device"] == "cpu"  # for the metrics file
    meta = json.loads((written["spade"] / META).read_text())
    assert not {"train_seconds", "steps_per_s", "device"} & set(meta) and meta["history"]
    assert checkpoint_sha256(written["spade"]) == checkpoint_sha256(tmp_path / "spade2")
    seg_meta = json.loads((written["segmenter"] / META).read_text())
    assert seg_meta["model"] == "linknet" and "train_seconds" not in seg_meta
    feats = load_features(written["features"])
    assert feats["paths"] == ["../0.png", "../1.png", "../2.png"] and feats["logits"] is None
    assert feats["features"].dtype == torch.float64 and feats["features"].shape == (3, 4)
