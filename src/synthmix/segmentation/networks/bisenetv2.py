"""BiSeNet V2 (Yu et al., IJCV 2021, "BiSeNet V2: Bilateral Network with Guided Aggregation
for Real-time Semantic Segmentation"), written from the paper's Fig. 3-6 and Table 1.

- **Detail branch**: wide and shallow, three stages of 3x3 Conv-BN-ReLU (64, 64, 128
  channels), each opened by a stride-2 conv: 1/8 of the input.
- **Semantic branch** (channel ratio 1/4): stem block (1/4, 16 ch: a strided conv, then a
  1x1 + strided 3x3 path beside a max-pool, concatenated and fused), gather-and-expansion
  layers (expansion 6; stride 2 ones with a depthwise-separable shortcut) to 32, 64 and 128
  channels at 1/8, 1/16 and 1/32, and the context embedding block (global average pooling,
  BN, 1x1 conv, broadcast add, 3x3 conv).
- **Bilateral guided aggregation**: each branch gates the other at its own scale (detail
  1/8 by the upsampled sigmoid of semantic; semantic 1/32 by the sigmoid of the downsampled
  detail), the two sums are added at 1/8 and fused by a 3x3 conv.
- **Segment head**: 3x3 Conv-BN-ReLU to ``head_channels`` (1024 in the reference
  implementation), dropout, 1x1 conv to the classes, bilinear upsampling to the input.
- **Booster**: the same head (128 channels) on the stem and on each semantic stage
  (1/4, 1/8, 1/16, 1/32), trained with the main loss and dropped at inference.

Where the paper leaves a detail open (ReLU after the expanding depthwise conv and after the
aggregation conv), this follows the authors' published code.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from synthmix.segmentation.networks.common import ConvBNReLU, init_weights, pad_to_multiple, upsample_to

STRIDE = 32  # the semantic branch's output stride


class StemBlock(nn.Module):
    def __init__(self, out_ch: int = 16):
        super().__init__()
        self.conv = ConvBNReLU(3, out_ch, 3, stride=2)
        self.left = nn.Sequential(ConvBNReLU(out_ch, out_ch // 2, 1), ConvBNReLU(out_ch // 2, out_ch, 3, stride=2))
        self.right = nn.MaxPool2d(3, stride=2, padding=1)
        self.fuse = ConvBNReLU(2 * out_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], 1))


class GatherExpansion(nn.Module):
    """GE layer: 3x3 conv gathers, a depthwise 3x3 expands by ``expansion`` (twice, the first
    strided, when ``stride`` is 2), a 1x1 conv projects back; residual add, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        mid = in_ch * expansion
        self.gather = ConvBNReLU(in_ch, in_ch, 3)
        if stride == 1:
            self.expand = ConvBNReLU(in_ch, mid, 3, groups=in_ch)
        else:
            self.expand = nn.Sequential(ConvBNReLU(in_ch, mid, 3, stride=2, groups=in_ch, relu=False),
                                        ConvBNReLU(mid, mid, 3, groups=mid))  # fmt: skip
        self.project = ConvBNReLU(mid, out_ch, 1, relu=False)
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:  # depthwise-separable strided shortcut
            self.shortcut = nn.Sequential(ConvBNReLU(in_ch, in_ch, 3, stride=stride, groups=in_ch, relu=False),
                                          ConvBNReLU(in_ch, out_ch, 1, relu=False))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.project(self.expand(self.gather(x))) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    def __init__(self, ch: int = 128):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch)
        self.point = ConvBNReLU(ch, ch, 1)
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)  # a plain 3x3 conv in the paper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.point(self.bn(x.mean((2, 3), keepdim=True)))
        return self.conv(x + g)


class DetailBranch(nn.Sequential):
    def __init__(self):
        super().__init__(
            ConvBNReLU(3, 64, 3, stride=2), ConvBNReLU(64, 64, 3),
            ConvBNReLU(64, 64, 3, stride=2), ConvBNReLU(64, 64, 3), ConvBNReLU(64, 64, 3),
            ConvBNReLU(64, 128, 3, stride=2), ConvBNReLU(128, 128, 3), ConvBNReLU(128, 128, 3),
        )  # fmt: skip


class SemanticBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = StemBlock(16)
        self.s3 = nn.Sequential(GatherExpansion(16, 32, 2), GatherExpansion(32, 32))
        self.s4 = nn.Sequential(GatherExpansion(32, 64, 2), GatherExpansion(64, 64))
        self.s5 = nn.Sequential(GatherExpansion(64, 128, 2), *(GatherExpansion(128, 128) for _ in range(3)))
        self.ce = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[stem 1/4, S3 1/8, S4 1/16, S5 1/32 (before CE), CE output 1/32]"""
        f2 = self.stem(x)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        f5 = self.s5(f4)
        return [f2, f3, f4, f5, self.ce(f5)]


class BilateralGuidedAggregation(nn.Module):
    def __init__(self, ch: int = 128):
        super().__init__()
        # detail side: a depthwise-separable conv at 1/8, and a strided conv + pooling to 1/32
        self.detail_keep = nn.Sequential(ConvBNReLU(ch, ch, 3, groups=ch, relu=False), nn.Conv2d(ch, ch, 1, bias=False))
        self.detail_down = nn.Sequential(ConvBNReLU(ch, ch, 3, stride=2, relu=False),
                                         nn.AvgPool2d(3, stride=2, padding=1))  # fmt: skip
        # semantic side: a 3x3 conv (upsampled to 1/8), and a depthwise-separable conv at 1/32
        self.semantic_up = ConvBNReLU(ch, ch, 3, relu=False)
        self.semantic_keep = nn.Sequential(ConvBNReLU(ch, ch, 3, groups=ch, relu=False), nn.Conv2d(ch, ch, 1, bias=False))
        self.fuse = ConvBNReLU(ch, ch, 3)

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[-2:]
        high = self.detail_keep(detail) * torch.sigmoid(upsample_to(self.semantic_up(semantic), size))
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.fuse(high + upsample_to(low, size))


class SegmentHead(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Conv2d(mid_ch, n_classes, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return upsample_to(self.cls(self.drop(self.conv(x))), size)


class Backbone(nn.Module):
    """Detail and semantic branches: what ``seg_train.backbone_weights`` loads into."""

    def __init__(self):
        super().__init__()
        self.detail = DetailBranch()
        self.semantic = SemanticBranch()


class BiSeNetV2(nn.Module):
    def __init__(self, n_classes: int, head_channels: int = 1024, aux_channels: int = 128):
        super().__init__()
        self.backbone = Backbone()
        self.bga = BilateralGuidedAggregation(128)
        self.head = SegmentHead(128, head_channels, n_classes)
        # booster heads on the stem, S3, S4 and S5 (training only)
        self.aux_heads = nn.ModuleList(SegmentHead(c, aux_channels, n_classes) for c in (16, 32, 64, 128))
        init_weights(self)

    def forward(self, x: torch.Tensor):
        x, size = pad_to_multiple(x, STRIDE)
        full = x.shape[-2:]
        sem = self.backbone.semantic(x)
        logits = self.head(self.bga(self.backbone.detail(x), sem[-1]), full)[..., : size[0], : size[1]]
        if not self.training:
            return logits
        aux = [h(f, full)[..., : size[0], : size[1]] for h, f in zip(self.aux_heads, sem[:4])]
        return logits, aux
