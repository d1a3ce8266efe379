"""Building blocks shared by the real-time segmentation networks."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional ReLU; ``groups=in_ch`` makes it depthwise."""

    def __init__(self, in_ch: int, out_ch: int, k: int = 3, stride: int = 1, groups: int = 1, relu: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, k, stride, k // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(out_ch)]  # fmt: skip
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def pad_to_multiple(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad bottom/right so both sides divide ``stride``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (h, w)


def upsample_to(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs, unit BatchNorm: the usual from-scratch init of these papers' code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module, skip_prefixes: tuple[str, ...] = ()) -> int:
    """Parameters, leaving out those under ``skip_prefixes`` (e.g. training-only heads)."""
    return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(skip_prefixes))


def load_backbone(model: nn.Module, tensors: dict, what: str) -> int:
    """Load ``tensors`` into ``model.backbone`` (names relative to it, an optional leading
    ``backbone.`` stripped); every backbone tensor must be present with its shape. Returns
    the number loaded; raises ``ValueError`` naming the first problems."""
    target = model.backbone.state_dict()
    src = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in tensors.items()}
    missing = [k for k in target if k not in src]
    wrong = [f"{k} {tuple(src[k].shape)} vs {tuple(v.shape)}" for k, v in target.items()
             if k in src and tuple(src[k].shape) != tuple(v.shape)]  # fmt: skip
    if missing or wrong:
        raise ValueError(f"{what}: {len(missing)} backbone tensors missing (e.g. {missing[:3]}), "
                         f"{len(wrong)} of another shape (e.g. {wrong[:3]})")  # fmt: skip
    model.backbone.load_state_dict({k: src[k] for k in target})
    return len(target)
