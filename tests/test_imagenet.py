"""The ImageNet classifiers: real weights checked on real photos shipped inside scikit-image."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from synthmix.core.errors import MissingAssetError
from synthmix.hyponet import imagenet as I

skdata = pytest.importorskip("skimage.data", reason="scikit-image (test extra) ships the photos")

# ImageNet's domestic-cat classes: tabby, tiger cat, Persian, Siamese, Egyptian cat
CAT_WNIDS = {"n02123045", "n02123159", "n02123394", "n02123597", "n02124075"}


@pytest.fixture(scope="module")
def lite0():
    try:
        return I.ImageNetClassifier("efficientnet_lite0")
    except MissingAssetError as exc:
        pytest.skip(str(exc))


def _top(clf, image, k=1):
    p = clf.probabilities([image])[0]
    return [(I.imagenet_wnids()[int(i)], I.imagenet_labels()[int(i)], float(v)) for v, i in zip(*p.topk(k))]


def test_efficientnet_lite0_recognises_a_cat_and_an_espresso(lite0):
    cat = Image.fromarray(skdata.chelsea())  # Chelsea the cat, 451x300 photo
    top = _top(lite0, cat, 3)
    assert top[0][0] in CAT_WNIDS, top
    assert sum(p for w, _, p in top if w in CAT_WNIDS) > 0.6, top
    coffee = Image.fromarray(skdata.coffee())  # a cup of coffee seen from above
    wnid, label, p = _top(lite0, coffee)[0]
    assert label.startswith("espresso") and p > 0.5, (wnid, label, p)


def test_weights_map_in_order_onto_timm():
    import timm

    sd = torch.load(I.efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(sd) == len(target) == 296
    mapped = I.map_in_order(sd, target, "test")
    assert list(mapped) == list(target)
    assert next(iter(sd)) == "_conv_stem.weight" and next(iter(mapped)) == "conv_stem.weight"
    broken = dict(sd)
    broken["_fc.bias"] = torch.zeros(10)
    with pytest.raises(MissingAssetError, match="does not fit"):
        I.map_in_order(broken, target, "test")


def test_resnet50_offline_without_weights_names_the_param(tmp_path, monkeypatch):
    import torchvision.models._api as api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torchvision cache

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(MissingAssetError) as err:
        I.ImageNetClassifier("resnet50")
    assert "hyponet.weights" in str(err.value) and "efficientnet_lite0" in str(err.value)


def test_resnet50_loads_a_local_weights_file(tmp_path):
    from torchvision.models import resnet50

    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": resnet50(weights=None).state_dict()}, path)  # the real code path, random values
    clf = I.ImageNetClassifier("resnet50", weights=str(path))
    probs = clf.probabilities([Image.new("RGB", (40, 30), (120, 30, 200))])
    assert probs.shape == (1, 1000) and torch.allclose(probs.sum(), torch.tensor(1.0), atol=1e-4)
    with pytest.raises(MissingAssetError, match="does not exist"):
        I.ImageNetClassifier("resnet50", weights=str(tmp_path / "missing.pth"))


def test_inversion_and_input_geometry():
    spec = I.CLASSIFIERS["efficientnet_lite0"]
    fmnist_like = np.zeros((28, 28), np.uint8)
    fmnist_like[6:22, 8:20] = 220  # a bright garment on black, like Fashion-MNIST
    grey = Image.fromarray(fmnist_like).convert("RGB")
    assert I.needs_inversion(grey, "auto") and not I.needs_inversion(grey, False)
    assert not I.needs_inversion(Image.fromarray(255 - fmnist_like), "auto")  # already dark on light
    colour = Image.new("RGB", (28, 28), (10, 0, 0))
    assert not I.needs_inversion(colour, "auto")
    x = I.to_input(grey, spec, "auto")
    assert x.shape == (3, 224, 224)
    assert float(x[:, 0, 0].mean()) == pytest.approx(1.0)  # inverted background: white -> +1
    wide = I.to_input(Image.new("RGB", (451, 300)), spec, False)
    assert wide.shape == (3, 224, 224)
