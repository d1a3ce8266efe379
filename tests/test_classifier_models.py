"""timm classifiers (train.arch / train.weights / train.freeze_backbone) and swap mixes in the
training loop, on tiny CPU sets."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from shipped_params import section
from synthmix.classify.models import build_model, check_arch, embed, load_classifier, normalisation
from synthmix.classify.qc import classifier_params
from synthmix.classify.train import train_classifier
from synthmix.core.errors import MissingAssetError, ParamsError
from synthmix.core.weights import efficientnet_lite0_imagenet
from synthmix.mixes import build_mix
from test_training import CLASSES, make_set


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return make_set(root / "train", 24, 0), make_set(root / "val", 8, 1), make_set(root / "var", 24, 3)


def params(**kw):
    return section("train", **{**dict(seeds=[0], epochs=2, batch_size=16, input_size=16, lr=3e-3), **kw})


# ------------------------------------------------------------------ architecture and weights


def test_unknown_arch_lists_close_timm_names():
    check_arch("resnet50")
    with pytest.raises(ParamsError, match=r"train.arch = 'resnet5' is not a timm model \(close matches: .*resnet50"):
        check_arch("resnet5")
    with pytest.raises(ParamsError, match="timm.list_models"):
        build_model("zzzz_no_such_net", 3)


@pytest.mark.parametrize("arch", ["resnet18", "tf_efficientnet_lite0"])
def test_head_on_embedding_is_the_model(arch):
    torch.manual_seed(0)
    model = build_model(arch, 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.get_classifier()(embed(model, x)), model(x), atol=1e-5)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_file_loads_backbone_and_replaces_the_head(tmp_path, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("resnet18", num_classes=1000)  # an "ImageNet" checkpoint
    path = tmp_path / f"r18{suffix}"
    sd = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": sd}, path)
    model = build_model("resnet18", 3, weights=str(path))
    got = model.state_dict()
    assert torch.equal(got["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])
    assert got["fc.weight"].shape == (3, 512)  # a fresh 3-class head
    mean, std = normalisation(model, str(path))
    assert mean == pytest.approx((0.485, 0.456, 0.406)) and std == pytest.approx((0.229, 0.224, 0.225))
    assert normalisation(build_model("resnet18", 3), None) == ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(MissingAssetError, match=r"train.weights = .* does not fit the architecture"):
        build_model("resnet34", 3, weights=str(path))


def test_offline_imagenet_is_efficientnet_lite0_only():
    reference = efficientnet_lite0_imagenet().state_dict()
    model = build_model("tf_efficientnet_lite0", 3, weights="offline_imagenet")
    got = model.state_dict()
    assert torch.equal(got["conv_stem.weight"], reference["conv_stem.weight"])
    assert got["classifier.weight"].shape == (3, 1280)
    assert normalisation(model, "offline_imagenet") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ParamsError, match="offline_imagenet fits only train.arch = tf_efficientnet_lite0"):
        build_model("resnet18", 3, weights="offline_imagenet")
    with pytest.raises(ValidationError, match="offline_imagenet .* fits only arch = tf_efficientnet_lite0"):
        params(arch="resnet50", weights="offline_imagenet")


def test_qc_classifier_params_are_valid_train_params():
    p = classifier_params(section("qc"))
    assert (p.arch, p.weights, p.freeze_backbone, p.augment) == ("resnet18", None, False, False)


# ------------------------------------------------------------------ frozen backbone


def test_frozen_backbone_trains_only_the_head_and_caches_features(sets, tmp_path):
    train, val, _ = sets
    p = params(freeze_backbone=True, epochs=3)
    cached = train_classifier(p, 0, train, val, CLASSES, tmp_path / "cached")
    plain = train_classifier(p, 0, train, val, CLASSES, tmp_path / "plain", cache_features=False)
    assert cached["feature_cache"] is True and plain["feature_cache"] is False
    model_c, _ = load_classifier(tmp_path / "cached", torch.device("cpu"))
    model_p, _ = load_classifier(tmp_path / "plain", torch.device("cpu"))
    sc, sp = model_c.state_dict(), model_p.state_dict()
    # the backbone (weights and batch-norm statistics) is untouched, identical in both runs
    backbone = [k for k in sc if not k.startswith("fc.")]
    assert all(torch.equal(sc[k], sp[k]) for k in backbone)
    assert torch.equal(sc["bn1.running_mean"], torch.zeros_like(sc["bn1.running_mean"]))
    # the cached features give the per-batch result up to float rounding
    assert torch.allclose(sc["fc.weight"], sp["fc.weight"], atol=1e-4)
    assert [h["val_accuracy"] for h in cached["history"]] == [h["val_accuracy"] for h in plain["history"]]


def test_frozen_backbone_from_init_state_only_head_changes(sets, tmp_path):
    train, val, _ = sets
    from synthmix.core.seeding import derive_seed, seed_everything

    seed_everything(derive_seed("train", 4))
    init = {k: v.clone() for k, v in build_model("resnet18", 2).state_dict().items()}
    train_classifier(params(freeze_backbone=True), 4, train, val, CLASSES, tmp_path / "m")
    trained = load_classifier(tmp_path / "m", torch.device("cpu"))[0].state_dict()
    changed = sorted(k for k in init if not torch.equal(init[k], trained[k]))
    assert changed == ["fc.bias", "fc.weight"]


# ------------------------------------------------------------------ swap mixes in the loop


def _variants(train, var):
    """Pretend the ``var`` images are image-to-image variants of ``train`` (same class, one each)."""
    return [{**v, "source": "synthetic", "source_path": t["path"], "source_sha256": t["sha256"]}
            for t, v in zip(train, var)]


def test_swap_mix_trains_on_the_drawn_rate_reproducibly(sets, tmp_path):
    train, val, var = sets
    mix = build_mix("lrr50", train, _variants(train, var), CLASSES, per_class=24, seed=0)
    p = params(epochs=4, freeze_backbone=True)
    a = train_classifier(p, 0, mix, val, CLASSES, tmp_path / "a", mix="lrr50")
    b = train_classifier(p, 0, mix, val, CLASSES, tmp_path / "b", mix="lrr50")
    assert a["n_train"] == 48 and a["n_swap_candidates"] == 48 and a["swap_probability"] == 0.5
    assert abs(a["swap_rate"] - 0.5) < 4 * np.sqrt(0.25 / (48 * 4))
    assert [h["swap_rate"] for h in a["history"]] == [h["swap_rate"] for h in b["history"]]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    from synthmix.classify.evaluate import evaluate_classifier

    out = evaluate_classifier(tmp_path / "a", val, tmp_path / "pred.csv", device="cpu")
    # DA-Fusion's metric, top level; equal to the accuracy on a class-balanced set
    assert out["mean_per_class_accuracy"] == pytest.approx(out["accuracy"], abs=1e-6)
    with pytest.raises(Exception, match="swap candidates"):
        train_classifier(p, 0, mix, val, CLASSES, tmp_path / "c")  # no mix name: candidates are not samples


def test_lrr0_trains_exactly_like_pct0(sets, tmp_path):
    from synthmix.core.checkpoint import checkpoint_sha256

    train, val, var = sets
    pct0 = build_mix("pct0", train, [], CLASSES, per_class=24, seed=0)
    lrr0 = build_mix("lrr0", train, _variants(train, var), CLASSES, per_class=24, seed=0)
    assert lrr0 == pct0
    p = params(epochs=1)
    train_classifier(p, 2, pct0, val, CLASSES, tmp_path / "pct0", mix="pct0")
    train_classifier(p, 2, lrr0, val, CLASSES, tmp_path / "lrr0", mix="lrr0")
    assert checkpoint_sha256(tmp_path / "pct0") == checkpoint_sha256(tmp_path / "lrr0")
