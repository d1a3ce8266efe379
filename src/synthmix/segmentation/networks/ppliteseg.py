"""PP-LiteSeg (Peng et al. 2022, "PP-LiteSeg: A Superior Real-Time Semantic Segmentation
Model") on STDC backbones (Fan et al., CVPR 2021, "Rethinking BiSeNet For Real-time Semantic
Segmentation"), written from the papers.

- **STDC encoder**: two strided 3x3 Conv-BN-ReLU (32, 64 channels, 1/4), then three stages of
  short-term dense concatenate modules (256, 512, 1024 channels at 1/8, 1/16, 1/32; STDC1
  has 2-2-2 modules, STDC2 4-5-3). A module runs four convs in a row (1x1 to C/2, then 3x3
  to C/4, C/8, C/8) and concatenates all four outputs; a strided module downsamples with a
  depthwise 3x3 after the first conv and average-pools that first output for the concat.
- **SPPM** (simple pyramid pooling): average pooling to 1x1, 2x2 and 4x4, a 1x1
  Conv-BN-ReLU each (128 channels), upsampled and *summed*, then a 3x3 Conv-BN-ReLU.
- **FLD decoder of UAFMs** (spatial attention): the deeper feature is upsampled to the
  shallower one's size, the shallower one is brought to its width by a 3x3 Conv-BN-ReLU;
  a weight ``a`` from the channel-wise mean and max of both (4 maps -> 3x3 conv-BN-ReLU ->
  3x3 conv-BN -> sigmoid) blends them, ``low * a + high * (1 - a)``, and a 3x3
  Conv-BN-ReLU gives the stage output. Output widths from 1/32 to 1/8: T 128, 64, 32;
  B 128, 96, 64 (the decoder narrows as resolution grows).
- **Seg heads**: 3x3 Conv-BN-ReLU, 1x1 conv to the classes, bilinear upsampling. The 1/8
  head predicts; the 1/16 and 1/32 heads are deep supervision in training only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from synthmix.segmentation.networks.common import ConvBNReLU, init_weights, pad_to_multiple, upsample_to

STRIDE = 32
STDC_LAYERS = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}
# size -> (backbone, decoder widths at 1/8, 1/16, 1/32, seg head widths at the same scales)
VARIANTS = {
    "t": ("stdc1", (32, 64, 128), (32, 64, 64)),
    "b": ("stdc2", (64, 96, 128), (64, 64, 64)),
}


class STDCModule(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        widths = [out_ch // 2, out_ch // 4, out_ch // 8, out_ch // 8]
        self.first = ConvBNReLU(in_ch, widths[0], 1)
        self.down = ConvBNReLU(widths[0], widths[0], 3, stride=2, groups=widths[0], relu=False) if stride == 2 else None
        self.skip = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.rest = nn.ModuleList(ConvBNReLU(a, b, 3) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.first(x)
        out = first if self.down is None else self.down(first)
        outs = []
        for conv in self.rest:
            out = conv(out)
            outs.append(out)
        return torch.cat([first if self.skip is None else self.skip(first), *outs], 1)


class STDCNet(nn.Module):
    def __init__(self, layers: tuple[int, int, int], base: int = 64):
        super().__init__()
        self.stem = nn.Sequential(ConvBNReLU(3, base // 2, 3, stride=2), ConvBNReLU(base // 2, base, 3, stride=2))
        stages, in_ch = [], base
        for i, n in enumerate(layers):
            out_ch = base * 4 * 2**i
            stages.append(nn.Sequential(*(STDCModule(in_ch if j == 0 else out_ch, out_ch, 2 if j == 0 else 1)
                                          for j in range(n))))  # fmt: skip
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.channels = [base * 4 * 2**i for i in range(len(layers))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at 1/8, 1/16, 1/32."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class SPPM(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, bins=(1, 2, 4)):
        super().__init__()
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(in_ch, mid_ch, 1)) for b in bins)
        self.out = ConvBNReLU(mid_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return self.out(sum(upsample_to(s(x), size) for s in self.stages))


class UAFM(nn.Module):
    """Unified attention fusion module with spatial attention."""

    def __init__(self, low_ch: int, high_ch: int, out_ch: int):
        super().__init__()
        self.prepare_low = ConvBNReLU(low_ch, high_ch, 3)
        self.attention = nn.Sequential(ConvBNReLU(4, 2, 3), ConvBNReLU(2, 1, 3, relu=False))
        self.out = ConvBNReLU(high_ch, out_ch, 3)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        low = self.prepare_low(low)
        high = upsample_to(high, low.shape[-2:])
        stats = torch.cat([low.mean(1, keepdim=True), low.amax(1, keepdim=True),
                           high.mean(1, keepdim=True), high.amax(1, keepdim=True)], 1)  # fmt: skip
        a = torch.sigmoid(self.attention(stats))
        return self.out(low * a + high * (1 - a))


class SegHead(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.cls = nn.Conv2d(mid_ch, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return upsample_to(self.cls(self.conv(x)), size)


class PPLiteSeg(nn.Module):
    def __init__(self, n_classes: int, size: str = "t", sppm_channels: int = 128):
        super().__init__()
        if size not in VARIANTS:
            raise ValueError(f"PP-LiteSeg size {size!r} is not one of {sorted(VARIANTS)}")
        backbone, dec, head = VARIANTS[size]
        self.backbone = STDCNet(STDC_LAYERS[backbone])
        c8, c16, c32 = self.backbone.channels
        self.sppm = SPPM(c32, sppm_channels, sppm_channels)
        # from deep to shallow: 1/32, 1/16, 1/8
        self.fuse = nn.ModuleList([UAFM(c32, sppm_channels, dec[2]), UAFM(c16, dec[2], dec[1]), UAFM(c8, dec[1], dec[0])])
        self.head = SegHead(dec[0], head[0], n_classes)
        self.aux_heads = nn.ModuleList([SegHead(dec[1], head[1], n_classes), SegHead(dec[2], head[2], n_classes)])
        init_weights(self)

    def forward(self, x: torch.Tensor):
        x, size = pad_to_multiple(x, STRIDE)
        full = x.shape[-2:]
        f8, f16, f32 = self.backbone(x)
        d32 = self.fuse[0](f32, self.sppm(f32))
        d16 = self.fuse[1](f16, d32)
        d8 = self.fuse[2](f8, d16)
        logits = self.head(d8, full)[..., : size[0], : size[1]]
        if not self.training:
            return logits
        return logits, [self.aux_heads[0](d16, full)[..., : size[0], : size[1]],
                        self.aux_heads[1](d32, full)[..., : size[0], : size[1]]]  # fmt: skip
