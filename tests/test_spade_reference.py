"""SPADE as in the reference: spectral norm switch, TTUR betas, the OASIS discriminator and its
losses, the VGG-19 weights error, and a killed run resuming to the same bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shipped_params import section
from synthmix.core.errors import MissingAssetError
from synthmix.segmentation.spade import (
    OASISDiscriminator,
    SpadeConfig,
    SpadeGAN,
    SPADEGenerator,
    labelmix,
    load_spade,
    oasis_ce,
    one_hot,
    train_spade,
)

TINY = dict(ngf=8, ndf=8, spade_hidden=8, z_dim=8, d_layers=3, batch_size=2)


def _data(n=4, size=32, k=3):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 8:24, 4:16] = 1
    masks[:, 10:30, 18:28] = 2
    masks[0, :2] = 255  # ignored pixels
    return images, masks


def test_reference_defaults_in_params():
    p = section("seg_train_spade")
    assert (p.lr_g, p.lr_d, p.beta1, p.beta2, p.d_layers) == (1e-4, 4e-4, 0.0, 0.9, 4)
    assert p.spectral_norm and p.param_free_norm == "batch" and p.discriminator == "patchgan"
    assert p.vgg_weights is None
    gan = SpadeGAN(SpadeConfig.from_params(p, 3, 32), p)
    assert gan.opt_g.param_groups[0]["betas"] == (0.0, 0.9) and gan.opt_d.param_groups[0]["lr"] == 4e-4


def test_spectral_norm_switch():
    def n_sn(sn):
        g = SPADEGenerator(SpadeConfig(n_classes=3, image_size=32, ngf=8, spade_hidden=8, spectral_norm=sn))
        return sum("parametrizations" in k for k in g.state_dict())

    assert n_sn(True) > 0 and n_sn(False) == 0


def test_oasis_discriminator_and_losses():
    cfg = SpadeConfig(n_classes=3, image_size=32, ndf=8, d_layers=3, discriminator="oasis")
    d = OASISDiscriminator(cfg)
    images, masks = _data()
    seg = one_hot(torch.from_numpy(masks.astype(np.int64)), 3)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = d(x)
    assert out.shape == (4, 4, 32, 32)  # N + 1 per-pixel logits
    # a discriminator that is sure of the right class (real) / of "fake" has a lower loss than one that is not
    right = torch.cat([torch.zeros(4, 1, 32, 32), 20 * seg], 1)
    fake = torch.cat([20 * torch.ones(4, 1, 32, 32), torch.zeros(4, 3, 32, 32)], 1)
    assert oasis_ce(right, seg, True) < 1e-3 < oasis_ce(fake, seg, True)
    assert oasis_ce(fake, seg, False) < 1e-3 < oasis_ce(right, seg, False)
    # class balancing: a rare class weighs as much in total as a frequent one
    uniform = torch.zeros(4, 4, 32, 32)
    assert oasis_ce(uniform, seg, True) == pytest.approx(np.log(4) * seg.sum().item() / seg[:, 0].numel(), rel=1e-5)
    mixed, mask = labelmix(seg, torch.ones_like(x), -torch.ones_like(x), torch.Generator().manual_seed(0))
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and torch.equal(mixed, 2 * mask.expand_as(mixed) - 1)
    ids = seg.argmax(1)
    for b in range(4):  # one coin per class and map
        for c in ids[b].unique():
            assert mask[b, 0][ids[b] == c].unique().numel() == 1


@pytest.mark.parametrize("disc", ["patchgan", "oasis"])
def test_one_training_step_per_discriminator(disc):
    p = section("seg_train_spade", **TINY, discriminator=disc)
    gan = SpadeGAN(SpadeConfig.from_params(p, 3, 32), p)
    images, masks = _data()
    seg = one_hot(torch.from_numpy(masks.astype(np.int64)), 3)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    losses = gan.train_step(seg, x, torch.randn(4, 8), torch.Generator().manual_seed(0))
    assert all(np.isfinite(v) for v in losses.values()) and {"d", "g_adv", "g_l1", "g_total"} <= set(losses)


def test_missing_vgg_weights_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    p = section("seg_train_spade", **TINY, vgg_weights="torchvision")
    with pytest.raises(MissingAssetError, match=r"vgg_weights = torchvision: .*vgg19-dcbb9e9d.pth not found"):
        SpadeGAN(SpadeConfig.from_params(p, 3, 32), p)
    p = section("seg_train_spade", **TINY, vgg_weights=str(tmp_path / "vgg.pth"))
    with pytest.raises(MissingAssetError, match="does not exist"):
        SpadeGAN(SpadeConfig.from_params(p, 3, 32), p)


def test_vgg_loss_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), tmp_path / "vgg19.pth")
    p = section("seg_train_spade", **TINY, vgg_weights=str(tmp_path / "vgg19.pth"), lambda_vgg=1.0)
    gan = SpadeGAN(SpadeConfig.from_params(p, 3, 32), p)
    images, masks = _data()
    seg = one_hot(torch.from_numpy(masks.astype(np.int64)), 3)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    losses = gan.train_step(seg, x, torch.randn(4, 8))
    assert losses["g_vgg"] > 0 and all(not q.requires_grad for q in gan.vgg.parameters())


class Killed(Exception):
    pass


@pytest.mark.parametrize("disc", ["patchgan", "oasis"])
def test_a_killed_run_resumes_to_the_same_bytes(tmp_path, disc):
    p = section("seg_train_spade", **TINY, discriminator=disc, steps=6, checkpoint_every=2)
    images, masks = _data()
    train_spade(p, images, masks, 3, tmp_path / "whole", show_progress=False)

    def kill(done):
        if done == 5:
            raise Killed

    scratch = tmp_path / ".partial" / "run"
    with pytest.raises(Killed):
        train_spade(p, images, masks, 3, tmp_path / "resumed", show_progress=False, scratch=scratch, on_step=kill)
    assert [q.name for q in scratch.iterdir()] == ["step-00000004"] and not (tmp_path / "resumed").exists()
    result = train_spade(p, images, masks, 3, tmp_path / "resumed", show_progress=False, scratch=scratch)
    assert result["resumed_at"] == 4 and not scratch.exists()
    for name in ("tensors.safetensors", "meta.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    assert load_spade(tmp_path / "resumed").cfg.discriminator == disc


def test_oasis_depth_must_fit_the_image_size():
    import copy

    from shipped_params import shipped
    from synthmix.config import validate_params
    from synthmix.core.errors import ParamsError

    raw = copy.deepcopy(shipped())
    raw["seg_train_spade"].update(discriminator="oasis", d_layers=7)
    with pytest.raises(ParamsError, match="oasis U-Net halves seg_prepare.image_size = 64"):
        validate_params(raw)
