"""BiSeNet V2 and PP-LiteSeg: output shapes, auxiliary heads in training only, parameter counts
against the papers' models, one training run through seg_train, backbone weights files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shipped_params import section
from synthmix.core.errors import MissingAssetError, ParamsError
from synthmix.segmentation.models import NATIVE, SEG_MODELS, build_model
from synthmix.segmentation.networks.common import count_parameters
from synthmix.segmentation.train import load_segmenter, predict, seg_loss, train_segmenter

NATIVE_NAMES = sorted(NATIVE)
N_AUX = {"bisenetv2": 4, "ppliteseg_t": 2, "ppliteseg_b": 2}


def _net(name: str, n_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, "unused", None, n_classes)


def test_the_native_networks_are_registered_beside_smp():
    assert {"bisenetv2", "ppliteseg_t", "ppliteseg_b", "linknet", "fpn"} <= set(SEG_MODELS)


@pytest.mark.parametrize("name", NATIVE_NAMES)
@pytest.mark.parametrize("size", [64, 128])
def test_shapes_in_training_and_eval(name, size):
    net = _net(name)
    x = torch.randn(2, 3, size, size)
    logits, aux = net.train()(x)
    assert logits.shape == (2, 5, size, size)
    assert len(aux) == N_AUX[name] and all(a.shape == (2, 5, size, size) for a in aux)
    with torch.no_grad():
        out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5, size, size)  # main logits only


@pytest.mark.parametrize("name", ["bisenetv2", "ppliteseg_t"])
def test_a_side_that_is_no_multiple_of_32_is_padded_and_cropped(name):
    with torch.no_grad():
        assert _net(name).eval()(torch.randn(1, 3, 40, 72)).shape == (1, 5, 40, 72)


# inference parameters (auxiliary heads left out) for the papers' 19 Cityscapes classes:
# BiSeNet V2 about 3.4 M; PP-LiteSeg-T about 8 M (STDC1 backbone without its classifier
# layers, 5.3 M, plus SPPM, decoder and head); PP-LiteSeg-B about 12.3 M (STDC2)
PAPER_PARAMS = {"bisenetv2": 3.4e6, "ppliteseg_t": 8.0e6, "ppliteseg_b": 12.3e6}


@pytest.mark.parametrize("name", NATIVE_NAMES)
def test_parameter_counts_match_the_papers_models(name):
    n = count_parameters(_net(name, 19), ("aux_heads",))
    assert abs(n - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.10, n


@pytest.mark.parametrize("name", ["bisenetv2", "ppliteseg_t"])
def test_training_steps_with_auxiliary_heads_lower_the_loss(name):
    net = _net(name, 3).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 64, 64, generator=g)
    y = torch.zeros(4, 64, 64, dtype=torch.long)
    y[:, 16:48, 8:40] = 1
    y[:, 40:, 40:] = 2
    y[0, :4] = 255  # ignored pixels
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        out = net(x)
        assert isinstance(out, tuple) and len(out[1]) == N_AUX[name]
        loss = seg_loss(out, y, 255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    main_only = seg_loss(out[0], y, 255).item()
    assert losses[-1] < losses[0] and losses[0] > main_only  # the aux terms are in the loss


def test_train_segmenter_runs_bisenetv2_and_the_checkpoint_predicts(tmp_path):
    params = section("seg_train", epochs=1, batch_size=4)
    rng = np.random.default_rng(0)
    pairs = (rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, (6, 32, 32), dtype=np.uint8))
    result = train_segmenter(params, "bisenetv2", 0, pairs, pairs, 3, 255, tmp_path / "run", torch.device("cpu"))
    assert np.isfinite(result["history"][0]["train_loss"]) and result["backbone_weights"] is None
    model, meta = load_segmenter(tmp_path / "run", torch.device("cpu"))
    assert meta["model"] == "bisenetv2" and not model.training
    pred = predict(model, torch.from_numpy(pairs[0]), torch.device("cpu"), 4)
    assert pred.shape == (6, 32, 32) and int(pred.max()) < 3


def test_backbone_weights_load_from_a_local_file(tmp_path):
    from safetensors.torch import save_file

    donor = _net("ppliteseg_t")
    path = tmp_path / "stdc1.safetensors"
    save_file({f"backbone.{k}": v.contiguous() for k, v in donor.backbone.state_dict().items()}, str(path))
    net = build_model("ppliteseg_t", "unused", None, 5, str(path))
    assert all(torch.equal(a, b) for a, b in zip(net.backbone.state_dict().values(), donor.backbone.state_dict().values()))
    with pytest.raises(MissingAssetError, match="seg_train.backbone_weights .* for bisenetv2: .* missing"):
        build_model("bisenetv2", "unused", None, 5, str(path))  # STDC1 tensors are no BiSeNet V2 backbone
    with pytest.raises(MissingAssetError, match="does not exist"):
        build_model("ppliteseg_t", "unused", None, 5, str(tmp_path / "nope.pth"))
    with pytest.raises(ParamsError, match="seg_train.backbone_weights is for"):
        build_model("linknet", "resnet18", None, 5, str(path))


def test_backbone_weights_with_an_smp_model_is_refused_by_the_params():
    with pytest.raises(ValueError, match=r"\['linknet'\] are smp models"):
        section("seg_train", models=["bisenetv2", "linknet"], backbone_weights="w.safetensors")
