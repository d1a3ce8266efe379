"""Params of the segmentation branch (study 5): label DDPM -> post-processing -> SPADE -> mixes -> models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field, field_validator, model_validator

from synthmix.config.base import Section, unique_names
from synthmix.config.generation import DDPMTrainingParams, unet_shape_problem
from synthmix.mixes import SEGMENTATION_KINDS, MixSpec, check_names
from synthmix.segmentation.models import NATIVE, SEG_MODELS

if TYPE_CHECKING:
    from synthmix.config.params import Params

SegModelName = Literal[tuple(SEG_MODELS)]  # the registry's names (synthmix.segmentation.models)


def _pair(v: list[int], key: str, low: int) -> list[int]:
    if len(v) != 2 or v[0] > v[1] or v[0] < low:
        raise ValueError(f"{key} must be [min, max] with {low} <= min <= max, got {v}")
    return v


class SegPrepareParams(Section):
    # fashion_mnist_scenes: the offline scene set built from Fashion-MNIST items (root = its files)
    # folder_pairs: root/images/<name>.<ext> with root/masks/<name>.png (LoveDA-style layout)
    source: Literal["fashion_mnist_scenes", "folder_pairs"]
    root: str
    # class names in mask-id order; for scenes, id 0 is the background, the rest are
    # Fashion-MNIST class names
    classes: list[str] = Field(min_length=2)
    # folder_pairs only: one [r, g, b] mask colour per class; null = masks hold integer ids
    palette: Optional[list[list[int]]]
    ignore_index: int = Field(ge=0, le=255)
    # folder_pairs id masks: class id = mask value - id_offset; values below it are no-data
    # (ignore_index). LoveDA: 1 (its 0 = no-data, 1..7 = background..agriculture)
    id_offset: int = Field(ge=0, le=254)
    image_size: int = Field(ge=32)
    train_count: int = Field(ge=1)
    val_count: int = Field(ge=1)
    test_count: int = Field(ge=1)
    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    items_per_scene: list[int]
    item_size: list[int]
    silhouette_threshold: int = Field(ge=1, le=254)
    # exact copies (same image sha256) across train/val/test: error = stop naming the files;
    # drop = leave the pair out of the later split (train, val, test order), counted in the metrics
    duplicates: Literal["error", "drop"]
    seed: int

    _unique_classes = field_validator("classes")(unique_names)

    @field_validator("items_per_scene")
    @classmethod
    def _items(cls, v: list[int]) -> list[int]:
        return _pair(v, "seg_prepare.items_per_scene", 1)

    @field_validator("item_size")
    @classmethod
    def _item_size(cls, v: list[int]) -> list[int]:
        return _pair(v, "seg_prepare.item_size", 8)

    @model_validator(mode="after")
    def _consistent(self) -> "SegPrepareParams":
        if self.ignore_index < len(self.classes):
            raise ValueError(
                f"seg_prepare.ignore_index = {self.ignore_index} collides with a class id "
                f"(0..{len(self.classes) - 1}); use 255"
            )
        if self.palette is not None:
            if len(self.palette) != len(self.classes):
                raise ValueError(
                    f"seg_prepare.palette has {len(self.palette)} colours for {len(self.classes)} classes"
                )
            for c in self.palette:
                if len(c) != 3 or not all(0 <= x <= 255 for x in c):
                    raise ValueError(f"seg_prepare.palette entry {c} must be [r, g, b] with 0..255 values")
            if len({tuple(c) for c in self.palette}) != len(self.palette):
                raise ValueError("seg_prepare.palette colours must be distinct")
        if self.id_offset and (self.palette is not None or self.source != "folder_pairs"):
            raise ValueError(
                f"seg_prepare.id_offset = {self.id_offset} applies to folder_pairs id masks only: "
                "set it to 0, or use source folder_pairs with palette null"
            )
        if self.source == "fashion_mnist_scenes" and self.item_size[1] > self.image_size:
            raise ValueError(
                f"seg_prepare.item_size = {self.item_size} exceeds image_size = {self.image_size}"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("seg_prepare.val_fraction + test_fraction must be below 1")
        return self


class SegTrainLabelsParams(DDPMTrainingParams):
    """The train_generator DDPM without classes (its own values in params.yaml, sized for label maps)."""


class SegGenerateLabelsParams(Section):
    count: int = Field(ge=1)
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seed: int
    # post-processing (at the label resolution)
    ramp_tolerance: float = Field(gt=0, le=0.5)
    structuring_element: Literal["square", "cross", "disk"]
    element_size: int = Field(ge=1)
    min_island_size: int = Field(ge=0)
    neighbourhood: int = Field(ge=3)

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (a window centred on the pixel), e.g. 3 or 5")
        return v


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
    vgg_weights: Optional[str]
    lambda_vgg: float = Field(ge=0)
    checkpoint_every: int = Field(ge=0)
    seed: int


class SegGenerateImagesParams(Section):
    batch_size: int = Field(ge=1)
    seed: int


class SegFilterParams(Section):
    """FreeMask (Yang et al., NeurIPS 2023): noisy synthetic pixels ignored, hard pairs re-sampled."""

    enabled: bool
    # the scoring segmenter (trained on the real train split with seg_train's settings)
    model: SegModelName
    epochs: int = Field(ge=1)
    # a synthetic pixel becomes ignore_index when its loss > tolerance_margin x its class's mean loss
    tolerance_margin: float = Field(gt=0)
    # where the class means come from: real (the real train pixels) | synthetic (all synthetic pixels)
    class_mean_from: Literal["real", "synthetic"]
    resample: bool
    hardness_power: float = Field(ge=0)
    preview_count: int = Field(ge=1)
    seed: int


class SegMixParams(Section):
    # repN: the real train size, N % of the pairs replaced by synthetic ones; addN: all real
    # pairs plus N % as many synthetic ones
    names: list[str] = Field(min_length=1)
    seed: int

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return check_names(v, SEGMENTATION_KINDS)


class SegTrainParams(Section):
    models: list[SegModelName] = Field(min_length=1)
    # smp models only: the encoder and its weights (null: random init, offline; imagenet:
    # smp's ImageNet encoder weights, download or cache)
    encoder: str
    encoder_weights: Optional[Literal["imagenet"]]
    # bisenetv2 / ppliteseg_*: a local weights file (.safetensors or a torch state dict) for the
    # network's backbone; null = random init
    backbone_weights: Optional[str]
    seeds: list[int] = Field(min_length=1)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    augment: bool
    num_threads: int = Field(ge=0)


    @model_validator(mode="after")
    def _backbone_weights(self) -> "SegTrainParams":
        if self.backbone_weights is not None:
            smp = [m for m in self.models if m not in NATIVE]
            if smp:
                raise ValueError(f"seg_train.backbone_weights is set, but {smp} are smp models, which take "
                                 "seg_train.encoder_weights instead: drop them from seg_train.models or set "
                                 "backbone_weights: null")  # fmt: skip
        return self


class SegEvaluateParams(Section):
    batch_size: int = Field(ge=1)
    overlay_count: int = Field(ge=1)


class SegSummarizeParams(Section):
    baseline: str
    confidence: float = Field(gt=0, lt=1)


def seg_checks(p: "Params") -> None:
    """Cross-section checks of the segmentation branch (raised as ValueError by pydantic)."""
    if p.seg_summarize.baseline not in p.seg_mix.names:
        raise ValueError(
            f"seg_summarize.baseline = {p.seg_summarize.baseline!r} is not one of seg_mix.names {p.seg_mix.names}"
        )
    tl = p.seg_train_labels
    problem = unet_shape_problem("seg_train_labels", tl)
    if problem:
        raise ValueError(problem)
    size = p.seg_prepare.image_size
    if tl.resolution > size:
        raise ValueError(
            f"seg_train_labels.resolution = {tl.resolution} exceeds seg_prepare.image_size = {size}"
        )
    if size % 32:
        raise ValueError(
            f"seg_prepare.image_size = {size} must be a multiple of 32 (the segmentation encoders downsample 32x)"
        )
    if size % 2 ** p.seg_train_spade.upsamples or size // 2 ** p.seg_train_spade.upsamples < 2:
        raise ValueError(
            f"seg_train_spade.upsamples = {p.seg_train_spade.upsamples}: seg_prepare.image_size = {size} "
            "must be divisible by 2 ** upsamples with a start size of at least 2"
        )
    sp = p.seg_train_spade
    if sp.discriminator == "oasis" and size % 2**sp.d_layers:
        raise ValueError(
            f"seg_train_spade.d_layers = {sp.d_layers}: the oasis U-Net halves seg_prepare.image_size = {size} "
            f"d_layers times, so it must be divisible by 2 ** d_layers"
        )
    if p.seg_prepare.source == "fashion_mnist_scenes":
        n_real = p.seg_prepare.train_count
        need = {n: MixSpec.parse(n, SEGMENTATION_KINDS).counts(n_real, n_real)[1] for n in p.seg_mix.names}
        worst = max(need, key=need.get)
        if need[worst] > p.seg_generate_labels.count:
            raise ValueError(
                f"seg_mix {worst} needs {need[worst]} synthetic pairs, but seg_generate_labels.count = "
                f"{p.seg_generate_labels.count}: raise it to at least {need[worst]}"
            )
