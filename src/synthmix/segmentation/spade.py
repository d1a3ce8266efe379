"""SPADE label-to-image GAN (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive
Normalization"), following the reference implementation's defaults, small enough to read in
one sitting.

- :class:`SPADE`: parameter-free normalisation (batch norm as the reference's
  ``spadesyncbatch3x3``, or instance norm), then a per-pixel scale and shift predicted from the
  (resized) one-hot label map: ``norm(x) * (1 + gamma(seg)) + beta(seg)``.
- :class:`SPADEResBlock`: two SPADE -> LeakyReLU -> 3x3 conv layers with a learned 1x1
  shortcut when the width changes; spectral norm on these convs (``spectral_norm``).
- :class:`SPADEGenerator`: the variant without an image encoder: the label map, downsampled
  to the start size, is convolved into the first feature map (plus a projected noise vector
  ``z`` for diversity, seeded per image); a SPADE block, then ``upsamples`` x (nearest 2x
  upsampling + SPADE block), then conv -> tanh.
- Discriminators (``discriminator``): ``patchgan``, the reference's multi-scale
  discriminator: ``num_d`` PatchGANs (``d_layers`` = n_layers_D, 4x4 kernels, spectral norm
  + instance norm inside) on the (label, image) concatenation at successively 2x
  average-pooled scales, hinge loss and feature matching; ``oasis``, the OASIS segmentation
  discriminator (Schonfeld et al. 2021): a U-Net on the image alone that labels every pixel
  with one of the N classes or "fake" (N + 1 outputs), trained with class-balanced
  cross-entropy and LabelMix; the generator's adversarial loss is then the balanced
  cross-entropy of its images against their label maps.
- Generator extras: a VGG-19 perceptual loss (``lambda_vgg``, relu1_1 .. relu5_1 weighted
  1/32 .. 1, as the reference) when ``vgg_weights`` names local ImageNet weights, and a pix2pix
  L1 term (``lambda_l1``) that makes short CPU runs converge without them.
- Optimisers: Adam with TTUR (``lr_g`` 1e-4, ``lr_d`` 4e-4, betas ``beta1`` / ``beta2`` =
  0 / 0.9, the reference's defaults).

:func:`train_spade` trains on the real pairs and writes one checkpoint folder (generator and
discriminator weights as safetensors + architecture and losses as JSON, see
:mod:`synthmix.core.checkpoint`); with a ``scratch`` folder it saves its whole state every
``checkpoint_every`` steps and a re-run resumes from there, ending with the same bytes as an
uninterrupted run on the CPU. :func:`load_spade` / :func:`render` turn label maps into images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from synthmix.config import Params
from synthmix.core.checkpoint import (
    checkpoint_sha256,
    load_checkpoint,
    load_state,
    prefixed,
    save_checkpoint,
)
from synthmix.core.errors import DataError, MissingAssetError
from synthmix.core.paths import Input, Output
from synthmix.core.resume import StepCheckpoints
from synthmix.core.seeding import derive_seed, seed_everything

if TYPE_CHECKING:
    from synthmix.config.sections.seg_generate_images import SegGenerateImagesParams
    from synthmix.config.sections.seg_train_spade import SegTrainSpadeParams

log = logging.getLogger(__name__)

FORMAT = "synthmix-spade/3"  # /2 had instance norm only and no spectral_norm switch; /1 a torch pickle
RESUME_FORMAT = "synthmix-spade-resume/1"


def one_hot(masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, H, W)`` integer ids -> ``(B, K, H, W)`` float one-hot; ids >= K (ignore) are all-zero."""
    valid = masks < n_classes
    oh = F.one_hot(torch.where(valid, masks, 0).long(), n_classes).permute(0, 3, 1, 2).float()
    return oh * valid.unsqueeze(1)


def _sn(module: nn.Module, on: bool) -> nn.Module:
    return _spectral_norm(module) if on else module


class SPADE(nn.Module):
    def __init__(self, norm_nc: int, label_nc: int, hidden: int, param_free_norm: str = "batch"):
        super().__init__()
        self.norm = (nn.BatchNorm2d(norm_nc, affine=False) if param_free_norm == "batch"
                     else nn.InstanceNorm2d(norm_nc, affine=False))  # fmt: skip
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        a = self.shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)


class SPADEResBlock(nn.Module):
    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int, sn: bool = True, param_free_norm: str = "batch"):
        super().__init__()
        mid = min(fin, fout)
        self.conv_0 = _sn(nn.Conv2d(fin, mid, 3, padding=1), sn)
        self.conv_1 = _sn(nn.Conv2d(mid, fout, 3, padding=1), sn)
        self.norm_0 = SPADE(fin, label_nc, hidden, param_free_norm)
        self.norm_1 = SPADE(mid, label_nc, hidden, param_free_norm)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s = _sn(nn.Conv2d(fin, fout, 1, bias=False), sn)
            self.norm_s = SPADE(fin, label_nc, hidden, param_free_norm)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


@dataclass(frozen=True)
class SpadeConfig:
    n_classes: int
    image_size: int
    ngf: int = 16
    ndf: int = 32
    spade_hidden: int = 32
    upsamples: int = 3
    z_dim: int = 32
    d_layers: int = 4
    num_d: int = 2
    spectral_norm: bool = True
    param_free_norm: str = "batch"
    discriminator: str = "patchgan"

    @classmethod
    def from_params(cls, params: SegTrainSpadeParams, n_classes: int, image_size: int) -> "SpadeConfig":
        keys = ("ngf", "ndf", "spade_hidden", "upsamples", "z_dim", "d_layers", "num_d", "spectral_norm",
                "param_free_norm", "discriminator")  # fmt: skip
        return cls(n_classes=n_classes, image_size=image_size, **{k: getattr(params, k) for k in keys})


class SPADEGenerator(nn.Module):
    def __init__(self, cfg: SpadeConfig):
        super().__init__()
        self.cfg = cfg
        self.start = cfg.image_size // 2**cfg.upsamples
        ch = [cfg.ngf * min(2 ** (cfg.upsamples - i), 8) for i in range(cfg.upsamples + 1)]
        k, h, sn, pfn = cfg.n_classes, cfg.spade_hidden, cfg.spectral_norm, cfg.param_free_norm
        self.fc = nn.Conv2d(k, ch[0], 3, padding=1)
        self.z_fc = nn.Linear(cfg.z_dim, ch[0] * self.start**2) if cfg.z_dim else None
        self.head = SPADEResBlock(ch[0], ch[0], k, h, sn, pfn)
        self.ups = nn.ModuleList(SPADEResBlock(ch[i], ch[i + 1], k, h, sn, pfn) for i in range(cfg.upsamples))
        self.conv_img = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        x = self.fc(F.interpolate(seg, size=(self.start, self.start), mode="nearest"))
        if self.z_fc is not None:
            if z is None:
                raise ValueError("this generator needs a noise vector z")
            x = x + self.z_fc(z).view(x.shape)
        x = self.head(x, seg)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class PatchDiscriminator(nn.Module):
    """PatchGAN (the reference's ``NLayerDiscriminator``): 4x4 convs with padding 2, the first
    and last without normalisation; returns every block's output."""

    def __init__(self, in_nc: int, ndf: int, n_layers: int, sn: bool = True):
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_nc, ndf, 4, 2, 2), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            blocks.append(nn.Sequential(_sn(nn.Conv2d(prev, nf, 4, stride, 2), sn),
                                        nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2)))  # fmt: skip
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, cfg: SpadeConfig):
        super().__init__()
        self.ds = nn.ModuleList(PatchDiscriminator(cfg.n_classes + 3, cfg.ndf, cfg.d_layers, cfg.spectral_norm)
                                for _ in range(cfg.num_d))  # fmt: skip

    def forward(self, seg: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([seg, image], 1)
        outs = []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


class _DResBlock(nn.Module):
    """OASIS discriminator residual block: (LeakyReLU, 3x3 conv) x 2 + 1x1 shortcut, optional 2x pooling."""

    def __init__(self, fin: int, fout: int, sn: bool, down: bool):
        super().__init__()
        self.conv1 = _sn(nn.Conv2d(fin, fout, 3, padding=1), sn)
        self.conv2 = _sn(nn.Conv2d(fout, fout, 3, padding=1), sn)
        self.skip = _sn(nn.Conv2d(fin, fout, 1), sn) if fin != fout else None
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))
        s = x if self.skip is None else self.skip(x)
        if self.down:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class OASISDiscriminator(nn.Module):
    """U-Net segmentation discriminator: ``d_layers`` downsampling residual blocks (width ndf,
    doubling to at most 8 ndf), as many upsampling ones with skip connections, and a 1x1 conv
    to N + 1 per-pixel logits (channel 0 = fake, channel k + 1 = class k)."""

    def __init__(self, cfg: SpadeConfig):
        super().__init__()
        n, sn = cfg.d_layers, cfg.spectral_norm
        w = [cfg.ndf * min(2**i, 8) for i in range(n)]
        self.down = nn.ModuleList(_DResBlock(3 if i == 0 else w[i - 1], w[i], sn, True) for i in range(n))
        self.up = nn.ModuleList(_DResBlock(w[i] + w[i - 1], w[i - 1], sn, False) for i in range(n - 1, 0, -1))
        self.out = nn.Conv2d(w[0], cfg.n_classes + 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feats, x = [], image
        for block in self.down:
            x = block(x)
            feats.append(x)
        for block, skip in zip(self.up, reversed(feats[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.out(F.interpolate(x, size=image.shape[-2:], mode="nearest"))


def d_hinge_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Hinge loss of the discriminators: relu(1 - D(real)) + relu(1 + D(fake)), averaged over scales."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)) / len(real)


def g_losses(
    fake_out: list[list[torch.Tensor]], real_out: list[list[torch.Tensor]], fake: torch.Tensor, real: torch.Tensor,
    lambda_feat: float, lambda_l1: float,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Generator losses: hinge (-D(fake)), feature matching, optional L1; ``total`` is their sum."""
    adv = -sum(f[-1].mean() for f in fake_out) / len(fake_out)
    fm = fake.new_zeros(())
    for f, r in zip(fake_out, real_out):
        for ff, rr in zip(f[:-1], r[:-1]):
            fm = fm + F.l1_loss(ff, rr.detach()) / len(fake_out)
    l1 = F.l1_loss(fake, real)
    total = adv + lambda_feat * fm + lambda_l1 * l1
    return {"total": total, "adv": adv, "feat": fm, "l1": l1}


def oasis_ce(logits: torch.Tensor, seg: torch.Tensor, real: bool) -> torch.Tensor:
    """OASIS's class-balanced (N + 1)-class cross-entropy: every pixel is weighted by the inverse
    frequency of its true class in the batch (classes present count equally); the target is
    the class (``real``) or the fake channel 0. Ignored pixels (all-zero one-hot) weigh 0."""
    valid = seg.sum(1) > 0
    ids = seg.argmax(1)
    occurrence = seg.sum((0, 2, 3))
    present = (occurrence > 0).sum().clamp(min=1)
    coef = torch.where(occurrence > 0, valid.sum() / (occurrence.clamp(min=1) * present), torch.zeros_like(occurrence))
    weight = coef[ids] * valid
    target = ids + 1 if real else torch.zeros_like(ids)
    return (F.cross_entropy(logits, target, reduction="none") * weight).mean()


def labelmix(seg: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
             rng: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """OASIS LabelMix: each class present in a map takes the real or the fake image (a coin
    per class and map); returns (mixed image, mask: 1 = real)."""
    ids = seg.argmax(1, keepdim=True)
    mask = torch.zeros_like(ids, dtype=real.dtype)
    coins = torch.randint(0, 2, (seg.shape[0], seg.shape[1]), generator=rng).to(real.device, real.dtype)
    for b in range(seg.shape[0]):
        mask[b] = coins[b][ids[b]]
    return mask * real + (1 - mask) * fake, mask


# VGG-19 layers relu1_1 .. relu5_1 (the ends of torchvision's vgg19().features slices) and weights
VGG_SLICES = (2, 7, 12, 21, 30)
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
VGG19_TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's IMAGENET1K_V1 weights file
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_weights_path(spec: str) -> Path:
    """``torchvision``: the file in torch's hub cache (never downloaded here); else a path."""
    if spec != "torchvision":
        return Path(spec).expanduser()
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_TORCHVISION_FILE
    if not path.is_file():
        raise MissingAssetError(
            f"seg_train_spade.vgg_weights = torchvision: {path} not found. On a machine online, "
            "`python -c 'import torchvision; torchvision.models.vgg19(weights=\"IMAGENET1K_V1\")'` puts it "
            "there; copy it to this path, or set vgg_weights to a weights file, or null (no VGG loss)"
        )
    return path


class VGGLoss(nn.Module):
    """SPADE's perceptual loss: weighted L1 between VGG-19 features of fake and real images
    (ImageNet-normalised from [-1, 1]); the network is frozen."""

    def __init__(self, spec: str):
        super().__init__()
        import torchvision

        from synthmix.core.weights import load_state_dict_file

        param = "seg_train_spade.vgg_weights"
        sd = load_state_dict_file(vgg19_weights_path(spec), param)
        features = torchvision.models.vgg19(weights=None).features[: VGG_SLICES[-1]]
        state = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")} or sd
        state = {k: v for k, v in state.items()
                 if k.split(".")[0].isdigit() and int(k.split(".")[0]) < VGG_SLICES[-1]}  # fmt: skip
        try:
            features.load_state_dict(state)
        except RuntimeError as exc:
            raise MissingAssetError(f"{param} = {spec!r} is not torchvision's VGG-19 ({str(exc)[:300]})") from None
        self.slices = nn.ModuleList(features[a:b] for a, b in zip((0, *VGG_SLICES[:-1]), VGG_SLICES))
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "VGGLoss":
        return super().train(False)  # frozen: always eval

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        x, y = ((fake + 1) / 2 - self.mean) / self.std, ((real + 1) / 2 - self.mean) / self.std
        loss = fake.new_zeros(())
        for w, block in zip(VGG_WEIGHTS, self.slices):
            x, y = block(x), block(y)
            loss = loss + w * F.l1_loss(x, y.detach())
        return loss


class SpadeGAN:
    """Generator + discriminator + their Adam optimisers (TTUR: lr_g / lr_d, betas beta1 / beta2)."""

    def __init__(self, cfg: SpadeConfig, params: SegTrainSpadeParams, device: torch.device | str = "cpu"):
        self.cfg, self.params, self.device = cfg, params, torch.device(device)
        self.g = SPADEGenerator(cfg).to(self.device)
        self.oasis = cfg.discriminator == "oasis"
        self.d = (OASISDiscriminator(cfg) if self.oasis else MultiscaleDiscriminator(cfg)).to(self.device)
        betas = (params.beta1, params.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=params.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=params.lr_d, betas=betas)
        self.vgg = VGGLoss(params.vgg_weights).to(self.device) if params.vgg_weights and params.lambda_vgg else None

    def d_step(self, seg: torch.Tensor, real: torch.Tensor, z: torch.Tensor | None,
               rng: torch.Generator | None = None) -> float:
        with torch.no_grad():
            fake = self.g(seg, z)
        if self.oasis:
            out_real, out_fake = self.d(real), self.d(fake)
            loss = oasis_ce(out_real, seg, True) + oasis_ce(out_fake, seg, False)
            if self.params.lambda_labelmix:
                mixed, mask = labelmix(seg, real, fake, rng)
                target = mask * out_real + (1 - mask) * out_fake
                loss = loss + self.params.lambda_labelmix * F.mse_loss(self.d(mixed), target)
        else:
            loss = d_hinge_loss(self.d(seg, real), self.d(seg, fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.item()

    def g_step(self, seg: torch.Tensor, real: torch.Tensor, z: torch.Tensor | None) -> dict[str, torch.Tensor]:
        fake = self.g(seg, z)
        if self.oasis:
            adv = oasis_ce(self.d(fake), seg, True)
            l1 = F.l1_loss(fake, real)
            losses = {"adv": adv, "l1": l1, "total": adv + self.params.lambda_l1 * l1}
        else:
            with torch.no_grad():
                real_out = self.d(seg, real)
            losses = g_losses(self.d(seg, fake), real_out, fake, real, self.params.lambda_feat, self.params.lambda_l1)
        if self.vgg is not None:
            losses["vgg"] = self.vgg(fake, real)
            losses["total"] = losses["total"] + self.params.lambda_vgg * losses["vgg"]
        self.opt_g.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.opt_g.step()
        return {k: v.item() for k, v in losses.items()}

    def train_step(self, seg: torch.Tensor, real: torch.Tensor, z: torch.Tensor | None,
                   rng: torch.Generator | None = None) -> dict[str, float]:
        """One discriminator step, then one generator step on the same batch."""
        d = self.d_step(seg, real, z, rng)
        return {"d": d, **{f"g_{k}": v for k, v in self.g_step(seg, real, z).items()}}

    # ---- resumable state: weights, optimiser states (tensors) and their param groups (JSON)
    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {**prefixed("generator.", self.g.state_dict()), **prefixed("discriminator.", self.d.state_dict())}
        meta = {}
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            sd = opt.state_dict()
            for pid, entry in sd["state"].items():
                for k, v in entry.items():
                    if not torch.is_tensor(v):  # Adam's state is all tensors (step included)
                        raise TypeError(f"{name} state {k} is a {type(v).__name__}")
                    tensors[f"{name}/{pid}/{k}"] = v
            meta[name] = json.loads(json.dumps(sd["param_groups"]))
        return tensors, meta

    def load(self, tensors: dict[str, torch.Tensor], meta: dict, folder: Path) -> None:
        load_state(self.g, tensors, folder, "seg_train_spade", prefix="generator.")
        load_state(self.d, tensors, folder, "seg_train_spade", prefix="discriminator.")
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            state: dict[int, dict] = {}
            for key, v in tensors.items():
                if key.startswith(name + "/"):
                    _, pid, k = key.split("/", 2)
                    state.setdefault(int(pid), {})[k] = v.to(self.device) if k != "step" else v
            opt.load_state_dict({"state": state, "param_groups": meta[name]})


def noise_for(seeds: Sequence[int], z_dim: int) -> torch.Tensor | None:
    """One z per image from its own seed (independent of batch composition)."""
    if not z_dim:
        return None
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def to_tensors(images: np.ndarray, masks: np.ndarray, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, H, W, 3)`` images, ``(N, H, W)`` masks -> images in [-1, 1] and one-hot maps."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, one_hot(torch.from_numpy(masks.astype(np.int64)), n_classes)


def data_sha256(images: np.ndarray, masks: np.ndarray) -> str:
    """sha256 of the training arrays: part of the resumable state's key."""
    h = hashlib.sha256()
    for a in (images, masks):
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def train_spade(
    params: SegTrainSpadeParams, images: np.ndarray, masks: np.ndarray, n_classes: int,
    checkpoint: str | os.PathLike, device: torch.device | str = "cpu", show_progress: bool = True,
    scratch: str | os.PathLike | None = None, on_step: Callable[[int], None] | None = None,
) -> dict:  # fmt: skip
    """Train on real pairs (random horizontal flips) and write the checkpoint folder atomically
    (generator and discriminator weights in ``tensors.safetensors``, the architecture, params,
    losses and loss curve in ``meta.json``); the returned record adds timings and the device.

    ``scratch``: a folder for resumable state (every ``params.checkpoint_every`` steps: weights,
    optimiser states, RNG states and the loss record); a re-run resumes from its newest step
    and removes it when the checkpoint is written. ``on_step(steps done)`` runs after each step."""
    from tqdm.auto import tqdm

    if len(images) == 0:
        raise DataError("no training pairs for SPADE")
    device = torch.device(device)
    cfg = SpadeConfig.from_params(params, n_classes, images.shape[1])
    seed_everything(params.seed)
    gan = SpadeGAN(cfg, params, device)
    x_all, seg_all = to_tensors(images, masks, n_classes)
    g = torch.Generator().manual_seed(params.seed)
    history, start = [], 0
    steps = StepCheckpoints(Path(scratch), params.checkpoint_every, "seg_train_spade", RESUME_FORMAT) \
        if scratch is not None else None
    last = steps.latest() if steps is not None else None
    if last is not None:
        tensors, meta = steps.read(last)
        gan.load(tensors, meta, last)
        g.set_state(tensors["rng/generator"])
        torch.set_rng_state(tensors["rng/torch_cpu"])
        start, history = int(meta["step"]), list(meta["history"])
        log.info("SPADE: resuming at step %d of %d from %s", start, params.steps, last)
    t0 = time.perf_counter()
    bar = tqdm(range(start, params.steps), desc="train SPADE", unit="step", disable=not show_progress)
    for step in bar:
        idx = torch.randint(0, len(x_all), (min(params.batch_size, len(x_all)),), generator=g)
        x, seg = x_all[idx], seg_all[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        x[flip], seg[flip] = x[flip].flip(-1), seg[flip].flip(-1)
        z = torch.randn(len(idx), cfg.z_dim, generator=g) if cfg.z_dim else None
        losses = gan.train_step(seg.to(device), x.to(device), None if z is None else z.to(device), g)
        if not all(np.isfinite(v) for v in losses.values()):
            raise DataError(f"SPADE training diverged at step {step} ({losses}): lower seg_train_spade.lr_g / lr_d")
        history.append(losses)
        done = step + 1
        if steps is not None and steps.due(done, params.steps):
            tensors, meta = gan.state()
            tensors.update({"rng/generator": g.get_state(), "rng/torch_cpu": torch.get_rng_state()})
            steps.write(done, tensors, {"history": history, **meta})
        if step % 10 == 9:
            bar.set_postfix(d=f"{losses['d']:.3f}", l1=f"{losses['g_l1']:.3f}")
        if on_step is not None:
            on_step(done)
    seconds = time.perf_counter() - t0
    window = history[-min(50, len(history)) :]
    final = {k: round(float(np.mean([h[k] for h in window])), 5) for k in history[0]}
    points = np.linspace(0, len(history), min(20, len(history)) + 1).round().astype(int)
    curve = [{"step": int(hi), **{k: round(float(np.mean([h[k] for h in history[lo:hi]])), 5) for k in history[0]}}
             for lo, hi in zip(points[:-1], points[1:]) if hi > lo]  # fmt: skip
    # the checkpoint holds what the inputs determine; timings and the device go to the metrics
    record = {
        "format": FORMAT, "config": asdict(cfg), "params": params.model_dump(exclude={"checkpoint_every"}),
        "final_losses": final,
        "n_parameters_g": sum(p.numel() for p in gan.g.parameters()),
        "n_parameters_d": sum(p.numel() for p in gan.d.parameters()),
    }  # fmt: skip
    tensors = {**prefixed("generator.", gan.g.state_dict()), **prefixed("discriminator.", gan.d.state_dict())}
    save_checkpoint(checkpoint, tensors, {**record, "history": curve})
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    ran = params.steps - start
    log.info("SPADE: %d steps in %.1f s, final losses %s", ran, seconds, final)
    return {**record, "history": curve, "train_seconds": round(seconds, 2), "resumed_at": start,
            "steps_per_s": round(ran / seconds, 3) if ran and seconds > 0 else None, "device": str(device)}


def load_spade(checkpoint: str | os.PathLike, device: torch.device | str = "cpu") -> SPADEGenerator:
    """The generator of a SPADE checkpoint folder (see :mod:`synthmix.core.checkpoint`)."""
    tensors, meta = load_checkpoint(checkpoint, FORMAT, "seg_train_spade")
    g = SPADEGenerator(SpadeConfig(**meta["config"]))
    load_state(g, tensors, checkpoint, "seg_train_spade", prefix="generator.")
    return g.to(device).eval()


@torch.no_grad()
def render(g: SPADEGenerator, masks: np.ndarray, seeds: Sequence[int]) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` images for id ``masks`` ``(N, H, W)``, one noise seed per image."""
    device = next(g.parameters()).device
    seg = one_hot(torch.from_numpy(masks.astype(np.int64)), g.cfg.n_classes).to(device)
    z = noise_for(seeds, g.cfg.z_dim)
    out = g(seg, None if z is None else z.to(device))
    return ((out.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def image_seed_for(seed: int, index: int) -> int:
    return derive_seed("spade-image", int(seed), int(index))


def seg_train_spade_stage(params: Params, *, train: Input, classes: Input, out: Output, metrics: Output,
                          history: Output) -> None:
    """Stage seg_train_spade: the SPADE label-to-image GAN on the real train pairs."""
    from synthmix.core.atomic import write_json
    from synthmix.core.device import pick_device
    from synthmix.core.resume import finish_scratch, run_key, scratch_dir
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import load_pairs_arrays, read_pairs

    p = params.seg_train_spade
    info = read_class_info(classes)
    images, masks = load_pairs_arrays(read_pairs(train), info["image_size"])
    device = pick_device(params.device)
    # resumable state outside the output (DVC deletes outputs before a re-run), keyed by the inputs
    key = run_key({"params": p.model_dump(exclude={"checkpoint_every"}), "n_classes": len(info["classes"]),
                   "device": device.type, "data": data_sha256(images, masks)})  # fmt: skip
    scratch = scratch_dir(Path(out), "seg_train_spade", key)
    result = train_spade(p, images, masks, len(info["classes"]), out, device, scratch=scratch)
    finish_scratch(scratch)  # and the folders of runs whose inputs changed before they finished
    keys = ("final_losses", "n_parameters_g", "n_parameters_d")
    write_json(metrics, {"steps": p.steps, **{k: result[k] for k in keys}})
    # seconds and device differ between runs of the same inputs: kept out of dvc.lock's hashes
    write_timings(metrics, {k: result[k] for k in ("train_seconds", "steps_per_s", "resumed_at", "device")})
    write_json(history, result["history"])


def generate_spade_images(
    params: SegGenerateImagesParams, label_records: Sequence[dict], spade_dir: str | os.PathLike,
    out_dir: str | os.PathLike, device: torch.device | str = "cpu", scratch_root: str | os.PathLike | None = None,
) -> dict:  # fmt: skip
    """One SPADE image per label map (noise seeded per map index) into ``out_dir`` (images/ +
    pairs.jsonl pointing at the label masks), resumably: a scratch folder keyed by the SPADE
    checkpoint's hash, the label masks' hashes, the params and the device type holds every
    finished image; a re-run keeps those that decode and renders the rest in the same aligned
    blocks (:mod:`synthmix.core.resume`). Returns the metrics plus ``generated`` / ``reused`` /
    ``corrupt_regenerated`` / ``seconds``."""
    from tqdm import tqdm

    from synthmix.core.resume import blocks_to_run, image_ok, move_into_place, prune, run_key, scratch_dir
    from synthmix.segmentation.data import load_mask, pair_record, save_rgb, write_pairs

    p, out_dir, device = params, Path(out_dir), torch.device(device)
    spade_hash = checkpoint_sha256(spade_dir)  # weights + meta.json: both only what the inputs determine
    key = run_key({"spade": spade_hash, "labels": [[r["index"], r["sha256"]] for r in label_records],
                   "params": p.model_dump(), "device": device.type})  # fmt: skip
    root = Path(scratch_root) if scratch_root is not None else None
    scratch = scratch_dir(out_dir, "seg_generate_images", key, root)
    scratch.mkdir(parents=True, exist_ok=True)
    paths = [scratch / "images" / f"{r['index']:05d}.png" for r in label_records]
    sizes = []
    for r in label_records:
        with Image.open(r["path"]) as m:
            sizes.append(m.size)
    done = [image_ok(path, size, "RGB") for path, size in zip(paths, sizes)]
    corrupt = sum(1 for d, path in zip(done, paths) if not d and path.exists())
    reused = sum(done)
    blocks = blocks_to_run(len(label_records), p.batch_size, done)
    log.info("SPADE images in %s: %d finished ones reused, %d to render", scratch, reused, len(paths) - reused)
    seeds = [image_seed_for(p.seed, r["index"]) for r in label_records]
    start = time.perf_counter()
    if blocks:
        g = load_spade(spade_dir, device)
        for block in tqdm(blocks, desc="SPADE images", unit="batch"):
            masks = np.stack([load_mask(label_records[i]["path"]) for i in block])
            for i, image in zip(block, render(g, masks, [seeds[i] for i in block])):
                if not done[i]:  # a finished batch-mate is recomputed, never rewritten
                    save_rgb(image, paths[i])
    seconds = time.perf_counter() - start
    prune(scratch, paths, ("images",))
    # paths as they will be after the move: relative to out_dir, not to the scratch folder
    pairs = []
    for rec, path, seed in zip(label_records, paths, seeds):
        pair = pair_record(path, rec["path"], "synthetic", generator="spade", spade_sha256=spade_hash,
                           seed=seed, label_seed=rec["seed"], index=rec["index"])  # fmt: skip
        pairs.append({**pair, "path": str(out_dir.resolve() / path.relative_to(scratch))})
    write_pairs(scratch / "pairs.jsonl", pairs, base=out_dir)
    superseded = move_into_place(scratch, out_dir)
    return {"metrics": {"pairs": len(pairs), "spade_sha256": spade_hash}, "generated": len(paths) - reused,
            "reused": reused, "corrupt_regenerated": corrupt, "seconds": round(seconds, 2),
            "removed_scratch": superseded}  # fmt: skip


def seg_generate_images_stage(params: Params, *, labels: Input, spade: Input, out: Output, metrics: Output) -> None:
    """Stage seg_generate_images: one SPADE image per post-processed label map (seeded per map);
    ``labels`` is the seg_generate_labels folder (its labels.jsonl and masks).

    Resumable image by image: an interrupted run leaves its finished images in
    data/seg/.partial/seg_generate_images-<hash> and the next run renders only the rest."""
    from synthmix.core.atomic import write_json
    from synthmix.core.device import pick_device
    from synthmix.core.timings import write_timings
    from synthmix.data.manifest import read_manifest

    label_records = read_manifest(Path(labels) / "labels.jsonl")
    result = generate_spade_images(params.seg_generate_images, label_records, spade, out, pick_device(params.device))
    write_json(metrics, result["metrics"])
    # how this run went (resume counts, seconds) differs between runs of the same inputs
    write_timings(metrics, {k: result[k] for k in ("generated", "reused", "corrupt_regenerated", "seconds")})
    print(f"{out}: {result['metrics']['pairs']} SPADE images ({result['generated']} rendered, {result['reused']} reused)")
