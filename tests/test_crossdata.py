"""Cross-dataset evaluation: extra image-folder test sets with a class mapping."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from shipped_params import shipped
from synthmix.classify.crossdata import (
    class_mapping,
    cross_dataset_summary,
    load_test_set,
)
from synthmix.classify.evaluate import evaluate_extra_sets
from synthmix.classify.models import CHECKPOINT_FORMAT, PLAIN_MEAN, PLAIN_STD, predict
from synthmix.config import validate_params
from synthmix.config.sections.evaluate import ExtraTestSet
from synthmix.core.checkpoint import save_checkpoint
from synthmix.core.errors import DataError, ParamsError

CLASSES = ["t_shirt_top", "trouser", "sneaker"]


@pytest.fixture()
def folder(tmp_path):
    """A tiny folder test set: their names differ from ours, one extra class, non-square photos."""
    rng = np.random.default_rng(0)
    for name, n in (("Tee", 3), ("Pants", 2), ("SNEAKER", 4), ("bag", 5)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    return tmp_path


def test_class_map_selects_and_relabels_only_mapped_classes(folder):
    spec = ExtraTestSet(name="f", root=str(folder), class_map={"tee": "t_shirt_top", "Pants": "trouser"})
    x, y, info = load_test_set(spec, CLASSES, 16)
    assert x.shape == (5, 3, 16, 16) and x.dtype == torch.uint8
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1]
    assert info["class_map"] == {"Pants": "trouser", "Tee": "t_shirt_top"}


def test_empty_class_map_matches_same_named_classes_and_max_per_class_cuts(folder):
    spec = ExtraTestSet(name="f", root=str(folder), max_per_class=2)
    x, y, info = load_test_set(spec, CLASSES, 8)
    assert info["class_map"] == {"SNEAKER": "sneaker"} and y.tolist() == [2, 2]


def test_unknown_their_class_names_the_folders(folder):
    spec = ExtraTestSet(name="f", root=str(folder), class_map={"shirts": "t_shirt_top"})
    with pytest.raises(DataError, match="Pants"):
        load_test_set(spec, CLASSES, 8)
    with pytest.raises(DataError, match="give a class_map"):
        class_mapping(ExtraTestSet(name="f", root="x"), ["cat", "dog"], CLASSES)


def test_params_reject_a_map_onto_an_unknown_class():
    raw = copy.deepcopy(shipped())
    raw["prepare"]["classes"] = CLASSES
    raw["evaluate"]["extra_test_sets"] = [{"name": "f", "root": "/x", "class_map": {"a": "cat"}}]
    with pytest.raises(ParamsError, match=r"extra_test_sets\[f\].class_map maps to \['cat'\]"):
        validate_params(raw)
    raw["evaluate"]["extra_test_sets"] = [{"name": "test", "root": "/x"}]
    with pytest.raises(ParamsError, match="not 'test'"):
        validate_params(raw)


def test_evaluate_extra_sets_scores_the_checkpoint(folder, tmp_path):
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    ckpt = tmp_path / "m"
    save_checkpoint(ckpt, model.state_dict(), {"format": CHECKPOINT_FORMAT, "arch": "resnet18", "classes": CLASSES,
                                               "input_size": 16, "mean": PLAIN_MEAN, "std": PLAIN_STD,
                                               "best_epoch": 1, "val_accuracy": 0.5})  # fmt: skip
    spec = ExtraTestSet(name="f", root=str(folder), class_map={"tee": "t_shirt_top", "Pants": "trouser", "sneaker": "sneaker"})
    res = evaluate_extra_sets(ckpt, [spec], batch_size=4, device="cpu")["f"]
    x, y, _ = load_test_set(spec, CLASSES, 16)
    mean, std = torch.tensor(PLAIN_MEAN).view(1, 3, 1, 1), torch.tensor(PLAIN_STD).view(1, 3, 1, 1)
    model.eval()
    expected = (predict(model.to(memory_format=torch.channels_last), x, mean, std, torch.device("cpu"), 4) == y)
    assert res["n_test"] == 9 and res["accuracy"] == pytest.approx(expected.float().mean().item(), abs=1e-6)
    assert set(res["per_class_accuracy"]) == set(CLASSES)
    summary = cross_dataset_summary(0.9, {"f": res})
    assert summary["test_sets"] == {"test": 0.9, "f": res["accuracy"]}
    assert summary["accuracy_avg"] == pytest.approx((0.9 + res["accuracy"]) / 2, abs=1e-6)
