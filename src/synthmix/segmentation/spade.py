"""SPADE label-to-image GAN (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive
Normalization"), small enough to read in one sitting.

- :class:`SPADE`: parameter-free instance normalisation, then a per-pixel scale and shift
  predicted from the (resized) one-hot label map: ``norm(x) * (1 + gamma(seg)) + beta(seg)``.
- :class:`SPADEResBlock`: two SPADE -> LeakyReLU -> 3x3 conv (spectral norm) layers with a
  learned 1x1 shortcut when the width changes.
- :class:`SPADEGenerator`: the pix2pix-style variant without an image encoder: the label map,
  downsampled to the start size, is convolved into the first feature map (plus a projected
  noise vector ``z`` for diversity, seeded per image); a SPADE block, then ``upsamples``
  x (nearest 2x upsampling + SPADE block), then conv -> tanh.
- :class:`MultiscaleDiscriminator`: ``num_d`` PatchGAN discriminators on the
  (label, image) concatenation at successively 2x average-pooled scales; each returns its
  intermediate features for the feature-matching loss.
- Losses: hinge GAN loss for D and G, feature matching (L1 between D features of real and
  fake) and an optional pix2pix L1 term (``lambda_l1``) that stands in for SPADE's VGG
  perceptual loss, whose ImageNet VGG weights are not available offline; it makes short CPU
  runs converge.

:func:`train_spade` trains on the real pairs and writes one checkpoint folder (generator and
discriminator weights as safetensors + architecture and losses as JSON, see
:mod:`synthmix.core.checkpoint`), :func:`load_spade` / :func:`render` turn label maps into images.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from synthmix.config.segmentation import SegTrainSpadeParams
from synthmix.core.checkpoint import checkpoint_sha256, load_checkpoint, load_state, prefixed, save_checkpoint
from synthmix.core.errors import DataError
from synthmix.core.seeding import derive_seed, seed_everything
from synthmix.config import Params
from synthmix.core.stage import Input, Output

log = logging.getLogger(__name__)

FORMAT = "synthmix-spade/2"  # /1 was a torch pickle, no longer read


def one_hot(masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(B, H, W)`` integer ids -> ``(B, K, H, W)`` float one-hot; ids >= K (ignore) are all-zero."""
    valid = masks < n_classes
    oh = F.one_hot(torch.where(valid, masks, 0).long(), n_classes).permute(0, 3, 1, 2).float()
    return oh * valid.unsqueeze(1)


class SPADE(nn.Module):
    def __init__(self, norm_nc: int, label_nc: int, hidden: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        a = self.shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)


class SPADEResBlock(nn.Module):
    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int):
        super().__init__()
        mid = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, mid, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(mid, fout, 3, padding=1))
        self.norm_0, self.norm_1 = SPADE(fin, label_nc, hidden), SPADE(mid, label_nc, hidden)
        self.learned_shortcut = fin != fout
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_nc, hidden)

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
    d_layers: int = 3
    num_d: int = 2

    @classmethod
    def from_params(cls, params: SegTrainSpadeParams, n_classes: int, image_size: int) -> "SpadeConfig":
        keys = ("ngf", "ndf", "spade_hidden", "upsamples", "z_dim", "d_layers", "num_d")
        return cls(n_classes=n_classes, image_size=image_size, **{k: getattr(params, k) for k in keys})


class SPADEGenerator(nn.Module):
    def __init__(self, cfg: SpadeConfig):
        super().__init__()
        self.cfg = cfg
        self.start = cfg.image_size // 2**cfg.upsamples
        ch = [cfg.ngf * min(2 ** (cfg.upsamples - i), 8) for i in range(cfg.upsamples + 1)]
        k, h = cfg.n_classes, cfg.spade_hidden
        self.fc = nn.Conv2d(k, ch[0], 3, padding=1)
        self.z_fc = nn.Linear(cfg.z_dim, ch[0] * self.start**2) if cfg.z_dim else None
        self.head = SPADEResBlock(ch[0], ch[0], k, h)
        self.ups = nn.ModuleList(SPADEResBlock(ch[i], ch[i + 1], k, h) for i in range(cfg.upsamples))
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
    """PatchGAN (pix2pix / SPADE ``NLayerDiscriminator``); returns every block's output."""

    def __init__(self, in_nc: int, ndf: int, n_layers: int):
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2))]
        nf = ndf
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            blocks.append(nn.Sequential(spectral_norm(nn.Conv2d(prev, nf, 4, stride, 1)),
                                        nn.InstanceNorm2d(nf, affine=False), nn.LeakyReLU(0.2)))  # fmt: skip
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 1)))
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
        self.ds = nn.ModuleList(PatchDiscriminator(cfg.n_classes + 3, cfg.ndf, cfg.d_layers) for _ in range(cfg.num_d))

    def forward(self, seg: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([seg, image], 1)
        outs = []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


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


class SpadeGAN:
    """Generator + discriminator + their Adam optimisers (TTUR: betas (0, 0.9), as SPADE)."""

    def __init__(self, cfg: SpadeConfig, params: SegTrainSpadeParams, device: torch.device | str = "cpu"):
        self.cfg, self.params, self.device = cfg, params, torch.device(device)
        self.g = SPADEGenerator(cfg).to(self.device)
        self.d = MultiscaleDiscriminator(cfg).to(self.device)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=params.lr_g, betas=(0.0, 0.9))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=params.lr_d, betas=(0.0, 0.9))

    def d_step(self, seg: torch.Tensor, real: torch.Tensor, z: torch.Tensor | None) -> float:
        with torch.no_grad():
            fake = self.g(seg, z)
        loss = d_hinge_loss(self.d(seg, real), self.d(seg, fake))
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.item()

    def g_step(self, seg: torch.Tensor, real: torch.Tensor, z: torch.Tensor | None) -> dict[str, float]:
        fake = self.g(seg, z)
        with torch.no_grad():
            real_out = self.d(seg, real)
        losses = g_losses(self.d(seg, fake), real_out, fake, real, self.params.lambda_feat, self.params.lambda_l1)
        self.opt_g.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.opt_g.step()
        return {k: v.item() for k, v in losses.items()}

    def train_step(self, seg: torch.Tensor, real: torch.Tensor, z: torch.Tensor | None) -> dict[str, float]:
        """One discriminator step, then one generator step on the same batch."""
        d = self.d_step(seg, real, z)
        return {"d": d, **{f"g_{k}": v for k, v in self.g_step(seg, real, z).items()}}


def noise_for(seeds: Sequence[int], z_dim: int) -> torch.Tensor | None:
    """One z per image from its own seed (independent of batch composition)."""
    if not z_dim:
        return None
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s) % 2**63)) for s in seeds])


def to_tensors(images: np.ndarray, masks: np.ndarray, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, H, W, 3)`` images, ``(N, H, W)`` masks -> images in [-1, 1] and one-hot maps."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, one_hot(torch.from_numpy(masks.astype(np.int64)), n_classes)


def train_spade(
    params: SegTrainSpadeParams, images: np.ndarray, masks: np.ndarray, n_classes: int,
    checkpoint: str | os.PathLike, device: torch.device | str = "cpu", show_progress: bool = True,
) -> dict:  # fmt: skip
    """Train on real pairs (random horizontal flips) and write the checkpoint folder atomically
    (generator and discriminator weights in ``tensors.safetensors``, the architecture, params,
    losses and loss curve in ``meta.json``); the returned record adds timings and the device."""
    from tqdm.auto import tqdm

    if len(images) == 0:
        raise DataError("no training pairs for SPADE")
    device = torch.device(device)
    cfg = SpadeConfig.from_params(params, n_classes, images.shape[1])
    seed_everything(params.seed)
    gan = SpadeGAN(cfg, params, device)
    x_all, seg_all = to_tensors(images, masks, n_classes)
    g = torch.Generator().manual_seed(params.seed)
    history, start = [], time.perf_counter()
    bar = tqdm(range(params.steps), desc="train SPADE", unit="step", disable=not show_progress)
    for step in bar:
        idx = torch.randint(0, len(x_all), (min(params.batch_size, len(x_all)),), generator=g)
        x, seg = x_all[idx], seg_all[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        x[flip], seg[flip] = x[flip].flip(-1), seg[flip].flip(-1)
        z = torch.randn(len(idx), cfg.z_dim, generator=g) if cfg.z_dim else None
        losses = gan.train_step(seg.to(device), x.to(device), None if z is None else z.to(device))
        if not all(np.isfinite(v) for v in losses.values()):
            raise DataError(f"SPADE training diverged at step {step} ({losses}): lower seg_train_spade.lr_g / lr_d")
        history.append(losses)
        if step % 10 == 9:
            bar.set_postfix(d=f"{losses['d']:.3f}", l1=f"{losses['g_l1']:.3f}")
    seconds = time.perf_counter() - start
    window = history[-min(50, len(history)) :]
    final = {k: round(float(np.mean([h[k] for h in window])), 5) for k in history[0]}
    points = np.linspace(0, len(history), min(20, len(history)) + 1).round().astype(int)
    curve = [{"step": int(hi), **{k: round(float(np.mean([h[k] for h in history[lo:hi]])), 5) for k in history[0]}}
             for lo, hi in zip(points[:-1], points[1:]) if hi > lo]  # fmt: skip
    # the checkpoint holds what the inputs determine; timings and the device go to the metrics
    record = {
        "format": FORMAT, "config": asdict(cfg), "params": params.model_dump(), "final_losses": final,
        "n_parameters_g": sum(p.numel() for p in gan.g.parameters()),
        "n_parameters_d": sum(p.numel() for p in gan.d.parameters()),
    }  # fmt: skip
    tensors = {**prefixed("generator.", gan.g.state_dict()), **prefixed("discriminator.", gan.d.state_dict())}
    save_checkpoint(checkpoint, tensors, {**record, "history": curve})
    log.info("SPADE: %d steps in %.1f s, final losses %s", params.steps, seconds, final)
    return {**record, "history": curve, "train_seconds": round(seconds, 2),
            "steps_per_s": round(params.steps / seconds, 3), "device": str(device)}


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
    from synthmix.core.timings import write_timings
    from synthmix.data.classes import read_class_info
    from synthmix.segmentation.data import load_pairs_arrays, read_pairs

    p = params.seg_train_spade
    info = read_class_info(classes)
    images, masks = load_pairs_arrays(read_pairs(train), info["image_size"])
    result = train_spade(p, images, masks, len(info["classes"]), out, pick_device(params.device))
    keys = ("final_losses", "n_parameters_g", "n_parameters_d")
    write_json(metrics, {"steps": p.steps, **{k: result[k] for k in keys}})
    # seconds and device differ between runs of the same inputs: kept out of dvc.lock's hashes
    write_timings(metrics, {k: result[k] for k in ("train_seconds", "steps_per_s", "device")})
    write_json(history, result["history"])


def seg_generate_images_stage(params: Params, *, labels: Input, spade: Input, out: Output, metrics: Output) -> None:
    """Stage seg_generate_images: one SPADE image per post-processed label map (seeded per map);
    ``labels`` is the seg_generate_labels folder (its labels.jsonl and masks)."""
    from tqdm import tqdm

    from synthmix.core.atomic import building_dir, write_json
    from synthmix.core.device import pick_device
    from synthmix.data.manifest import read_manifest
    from synthmix.segmentation.data import load_mask, pair_record, save_rgb, write_pairs

    p = params.seg_generate_images
    label_records = read_manifest(Path(labels) / "labels.jsonl")
    g = load_spade(spade, pick_device(params.device))
    spade_hash = checkpoint_sha256(spade)  # weights + meta.json: both only what the inputs determine
    made = []
    with building_dir(out) as tmp:
        for lo in tqdm(range(0, len(label_records), p.batch_size), desc="SPADE images", unit="batch"):
            chunk = label_records[lo : lo + p.batch_size]
            masks = np.stack([load_mask(r["path"]) for r in chunk])
            seeds = [image_seed_for(p.seed, r["index"]) for r in chunk]
            for rec, image, seed in zip(chunk, render(g, masks, seeds), seeds):
                path = tmp / "images" / f"{rec['index']:05d}.png"
                save_rgb(image, path)
                made.append((path, rec, seed))
        # tmp is a sibling of out, so paths relative to it stay valid after the rename
        pairs = [pair_record(path, rec["path"], "synthetic", generator="spade", spade_sha256=spade_hash,
                             seed=seed, label_seed=rec["seed"], index=rec["index"])  # fmt: skip
                 for path, rec, seed in made]
        write_pairs(tmp / "pairs.jsonl", pairs)
    write_json(metrics, {"pairs": len(pairs), "spade_sha256": spade_hash})
