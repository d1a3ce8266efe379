"""``seg_train_spade``: the SPADE (or OASIS) label-to-image GAN."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field

from synthmix.config.base import FileParam, Section, check


class SegTrainSpadeParams(Section):
    ngf: int = Field(ge=4)
    ndf: int = Field(ge=4)
    spade_hidden: int = Field(ge=4)
    upsamples: int = Field(ge=1)
    z_dim: int = Field(ge=0)
    # the generator's parameter-free norm: batch (the reference's spadesyncbatch3x3) or instance
    param_free_norm: Literal["batch", "instance"]
    spectral_norm: bool
    # patchgan: multi-scale PatchGAN, hinge loss + feature matching (SPADE); oasis: per-pixel
    # (N + 1)-class U-Net discriminator, class-balanced cross-entropy + LabelMix (OASIS)
    discriminator: Literal["patchgan", "oasis"]
    d_layers: int = Field(ge=1)
    num_d: int = Field(ge=1)
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr_g: float = Field(gt=0)
    lr_d: float = Field(gt=0)
    beta1: float = Field(ge=0, lt=1)
    beta2: float = Field(ge=0, lt=1)
    lambda_feat: float = Field(ge=0)
    lambda_l1: float = Field(ge=0)
    lambda_labelmix: float = Field(ge=0)
    # null = no perceptual loss; torchvision = VGG-19 ImageNet weights in torch's hub cache;
    # or a path to that weights file (.pth state dict or .safetensors); never downloaded
    vgg_weights: Annotated[Optional[str], FileParam(keywords=("torchvision",))]
    lambda_vgg: float = Field(ge=0)
    checkpoint_every: int = Field(ge=0)
    seed: int


SCHEMA = SegTrainSpadeParams


@check("seg_train_spade", "seg_prepare")
def _fits_image(p) -> None:
    size, sp = p.seg_prepare.image_size, p.seg_train_spade
    if size % 2**sp.upsamples or size // 2**sp.upsamples < 2:
        raise ValueError(
            f"seg_train_spade.upsamples = {sp.upsamples}: seg_prepare.image_size = {size} "
            "must be divisible by 2 ** upsamples with a start size of at least 2"
        )
    if sp.discriminator == "oasis" and size % 2**sp.d_layers:
        raise ValueError(
            f"seg_train_spade.d_layers = {sp.d_layers}: the oasis U-Net halves seg_prepare.image_size = {size} "
            f"d_layers times, so it must be divisible by 2 ** d_layers"
        )


CHECKS = [_fits_image]
