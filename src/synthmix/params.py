"""The typed schema of params.yaml, checked before any heavy work.

Every stage calls :func:`load_params` first. An error names the key, the bad value and what
is allowed, e.g. ``train.lr = -0.1: Input should be greater than 0``. Unknown keys are errors
too (a typo such as ``train.lrr`` would otherwise be silently ignored).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ParamsError

MIX_NAME = re.compile(r"^(pct|aug)(\d+)$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareParams(Section):
    source: Literal["fashion_mnist_debian", "torchvision", "image_folder"] = "fashion_mnist_debian"
    # torchvision dataset name, used when source is torchvision
    dataset: Literal["cifar10", "stl10", "fashion_mnist"] = "fashion_mnist"
    # Debian files dir / torchvision download dir / ROOT of ROOT/<class>/* images
    root: str = "/usr/share/datasets/fashion-mnist"
    download: bool = False
    classes: list[str] = Field(min_length=2)
    train_per_class: int = Field(ge=1)
    val_per_class: int = Field(ge=1)
    test_per_class: int = Field(ge=1)
    # square side for image_folder photos (resize shorter side + centre crop); null keeps size
    image_size: Optional[int] = Field(default=None, ge=8)
    skip_corrupt: bool = False
    seed: int = 0

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str]) -> list[str]:
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"class names must be unique, repeated: {dupes}")
        return v


class DDPMTrainingParams(Section):
    """A diffusers UNet2DModel DDPM and its training run (train_generator, seg_train_labels)."""

    resolution: int = Field(32, ge=8)
    block_out_channels: list[int] = Field(default=[16, 32, 32], min_length=1)
    layers_per_block: int = Field(1, ge=1)
    attention: bool = False
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0)
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    ema_decay: float = Field(0.999, ge=0, lt=1)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    seed: int = 0


def check_unet_shape(section: str, p: DDPMTrainingParams) -> None:
    """GroupNorm needs channel counts in multiples of 8; each block after the first halves the size."""
    if any(c % 8 for c in p.block_out_channels):
        raise ValueError(
            f"{section}.block_out_channels = {p.block_out_channels}: "
            "each entry must be a multiple of 8 (GroupNorm uses 8 groups)"
        )
    down = 2 ** (len(p.block_out_channels) - 1)
    if p.resolution % down:
        raise ValueError(
            f"{section}.resolution = {p.resolution} must be divisible by {down} (2 ** (number of blocks - 1))"
        )


class TrainGeneratorParams(DDPMTrainingParams):
    label_dropout: float = Field(0.1, ge=0, lt=1)


# FreeU factors of the prompt-strategy study, per model family (null in params.yaml = these)
FREEU_DEFAULTS = {
    "sd": {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2},
    "sdxl": {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4},
}


class FreeUParams(Section):
    """FreeU (re-weighting of UNet skip/backbone features); null factors = the family default."""

    enabled: bool = False
    b1: Optional[float] = Field(default=None, ge=0)
    b2: Optional[float] = Field(default=None, ge=0)
    s1: Optional[float] = Field(default=None, ge=0)
    s2: Optional[float] = Field(default=None, ge=0)

    def resolved(self, family: str) -> dict[str, float]:
        base = FREEU_DEFAULTS[family]
        return {k: float(getattr(self, k) if getattr(self, k) is not None else base[k]) for k in base}


class LoraParams(Section):
    path: str = Field(min_length=1)  # a LoRA .safetensors file, or a folder holding one
    scale: float = 1.0
    weight_name: Optional[str] = None  # file name inside a folder with several LoRA files
    classes: list[str] = []  # apply only when generating these classes (e.g. one LoRA per class); [] = all


class SDParams(Section):
    """Stable Diffusion settings (generate.backend sd or sdxl)."""

    # hub id (online or HF cache), local diffusers folder, or a single .safetensors/.ckpt file
    model: Optional[str] = None
    model_kind: Literal["auto", "folder", "single_file", "hub"] = "auto"
    # single-file checkpoints: a local diffusers folder (or hub id) with the component configs
    config: Optional[str] = None
    refiner: Optional[str] = None  # sdxl only: refiner model (same forms as model)
    refiner_switch: float = Field(0.8, gt=0, lt=1)  # fraction of steps done by the base model
    scheduler: Literal["dpmpp_2m_karras", "euler_a", "ddim"] = "dpmpp_2m_karras"
    steps: int = Field(30, ge=1)
    guidance_scale: float = Field(7.5, ge=0)
    width: Optional[int] = Field(default=None, ge=8)  # null = 512 (sd) / 1024 (sdxl)
    height: Optional[int] = Field(default=None, ge=8)
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"  # auto = fp16 on CUDA, fp32 on CPU
    freeu: FreeUParams = FreeUParams()
    loras: list[LoraParams] = []
    # images per pipeline call, always this many (the last call padded): a fixed shape keeps
    # each image independent of generate.batch_size, the resume point and the process count
    forward_batch: int = Field(8, ge=1)
    compile: bool = False  # torch.compile the UNet (pays off for large runs on a GPU)
    save_size: Optional[int] = Field(default=None, ge=8)  # also write a downsampled copy (square side)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE downsamples by 8), e.g. {v - v % 8 or 8}")
        return v


class PromptParams(Section):
    """Prompt templates (dynamicprompts syntax) for the text-to-image backends."""

    # {class} = the class text; __name__ = a line of wildcards_dir/name.txt; {a|b} = a variant
    template: str = Field("a photo of a {class}", min_length=1)
    class_templates: dict[str, str] = {}  # per-class overrides of template
    class_names: dict[str, str] = {}  # text for {class}; default: the label with _ as spaces
    suffix: str = ""  # appended after ", " (the source's Fp)
    negative: str = ""  # negative prompt (the source's Fn)
    wildcards_dir: str = "prompts/wildcards"


class GenerateParams(Section):
    backend: Literal["ddpm", "sd", "sdxl"] = "ddpm"
    per_class: int = Field(225, ge=1)
    steps: int = Field(20, ge=1)
    guidance_scale: float = Field(2.0, ge=0)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    write_threads: int = Field(2, ge=0)  # PNG encoding/writing threads beside sampling; 0 = inline
    sd: SDParams = SDParams()
    prompt: PromptParams = PromptParams()

    @model_validator(mode="after")
    def _sd_needs_a_model(self) -> "GenerateParams":
        if self.backend in ("sd", "sdxl") and not self.sd.model:
            raise ValueError(
                f"generate.backend = {self.backend} needs generate.sd.model: a hub id (with network or in the "
                "Hugging Face cache), a local diffusers folder, or a single .safetensors/.ckpt file"
            )
        if self.sd.refiner and self.backend != "sdxl":
            raise ValueError(f"generate.sd.refiner is set but generate.backend = {self.backend}: a refiner needs sdxl")
        return self


class MixParams(Section):
    # pctN: fixed total per class, N % synthetic; augN: all real + N % as many synthetic
    names: list[str] = Field(min_length=1)
    # training images per class in pctN mixes; null = prepare.train_per_class
    per_class: Optional[int] = Field(default=None, ge=1)
    seed: int = 0

    @field_validator("names")
    @classmethod
    def _mix_names(cls, v: list[str]) -> list[str]:
        for name in v:
            m = MIX_NAME.match(name)
            if not m:
                raise ValueError(
                    f"mix name {name!r} must be pctN (N % synthetic at a fixed total, 0..100) "
                    "or augN (all real plus N % as many synthetic images)"
                )
            if m.group(1) == "pct" and int(m.group(2)) > 100:
                raise ValueError(f"mix name {name!r}: a percentage of synthetic images is at most 100")
        if len(set(v)) != len(v):
            raise ValueError(f"mix names must be unique: {v}")
        return v


class TrainParams(Section):
    seeds: list[int] = Field(min_length=1)
    arch: Literal["resnet18"] = "resnet18"
    pretrained: bool = False
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    input_size: int = Field(32, ge=16)
    augment: bool = False
    num_threads: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ExtraTestSet(Section):
    """One extra real test set for cross-dataset evaluation (the thesis's CIFAR-10 / STL-10 / ImageNet table)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # short id: metrics key and table column
    source: Literal["image_folder", "torchvision"] = "image_folder"
    root: str = Field(min_length=1)  # ROOT/<their class>/* (image_folder) or torchvision's root
    dataset: Literal["cifar10", "stl10", "fashion_mnist"] = "cifar10"  # torchvision only; test split
    download: bool = False  # torchvision only
    # their class name -> one of prepare.classes; their classes not listed are left out.
    # Empty = every prepare.classes name that the set also has (compared case/punctuation-blind).
    class_map: dict[str, str] = {}
    max_per_class: Optional[int] = Field(default=None, ge=1)  # null = every image
    seed: int = 0  # which images when max_per_class cuts


class EvaluateParams(Section):
    batch_size: int = Field(256, ge=1)
    extra_test_sets: list[ExtraTestSet] = []

    @field_validator("extra_test_sets")
    @classmethod
    def _unique_names(cls, v: list[ExtraTestSet]) -> list[ExtraTestSet]:
        names = [t.name for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({"test"} & set(names)))
        if dupes:
            raise ValueError(f"test set names must be unique and not 'test' (the main split): {dupes}")
        return v


class FidelityParams(Section):
    """FID / KID / precision-recall (/ Inception Score) of the synthetic set vs the real train split."""

    # auto: torch-fidelity's original weights if cached, else the converted offline weights
    # (scripts/setup.sh), else download; original: insist on them (needed for Inception Score)
    weights: Literal["auto", "original", "converted"] = "auto"
    download: bool = True  # allow torch-fidelity's download when no local weights are found
    image_size: int = Field(32, ge=8)  # every set is resized to this square side first (bicubic)
    max_per_class: Optional[int] = Field(default=None, ge=2)  # null = every image
    batch_size: int = Field(10, ge=1)  # images per Inception forward; 299 px activations grow with it
    kid_subsets: int = Field(100, ge=1)
    kid_subset_size: int = Field(1000, ge=2)  # clipped to the smaller set (the value used is recorded)
    prc_neighborhood: int = Field(3, ge=1)  # k of the k-NN balls of precision/recall
    isc_splits: int = Field(10, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0


class ReportParams(Section):
    """metrics/REPORT.md and its pictures."""

    sheet_per_class: int = Field(32, ge=1)  # synthetic images per class in the contact sheets
    seed: int = 0  # which images the contact sheets show


class QCParams(Section):
    """Quality control of the synthetic set before mixing (off by default: no source study filters)."""

    enabled: bool = False
    # wrong-class filter: a ResNet-18 trained on the real train split (val split picks the epoch)
    wrong_class: bool = True
    confidence: float = Field(0.9, gt=0, lt=1)  # drop if another class gets probability above this
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    input_size: int = Field(32, ge=16)
    # near-duplicates: phash = Hamming distance of 64-bit DCT hashes; features = cosine
    # similarity of the QC classifier's penultimate features; none = keep duplicates
    dedup: Literal["none", "phash", "features"] = "phash"
    phash_max_distance: int = Field(12, ge=0, le=256)  # Hamming distance of 256-bit hashes
    cosine_threshold: float = Field(0.98, gt=0, le=1)
    against_real: bool = True  # also drop synthetic images that duplicate a real training image
    sheet_max: int = Field(64, ge=1)  # dropped images shown in the report's contact sheet
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0


class SummarizeParams(Section):
    baseline: str = "pct0"
    confidence: float = Field(0.95, gt=0, lt=1)


class HyponetParams(Section):
    """HypoNet wildcards (study 3): sample image -> ImageNet class -> WordNet hypernym -> hyponyms."""

    classifier: Literal["efficientnet_lite0", "resnet50"] = "efficientnet_lite0"
    weights: Optional[str] = None  # local weights file; null = the pip package / torchvision cache
    samples_per_class: int = Field(5, ge=1)  # training images classified per class
    aggregate: Literal["vote", "mean", "union"] = "vote"  # how several samples' answers combine
    invert: Union[bool, Literal["auto"]] = "auto"  # auto: grey bright-on-dark images are inverted
    mapping: Literal["offset", "label_text"] = "offset"  # ImageNet class -> synset
    hypernym: Literal["first", "deepest", "all"] = "first"
    depth: Literal["direct", "subtree"] = "direct"
    lemmas: Literal["first", "all"] = "first"  # lemma names taken per hyponym synset
    underscores_to_spaces: bool = True
    max_count: int = Field(40, ge=1)
    min_count: int = Field(5, ge=1)  # fewer entries: climb to the hypernym's hypernym
    seed: int = 0
    fallback: Literal["class_synset", "none"] = "class_synset"
    related_levels: int = Field(2, ge=0)  # related = a common hypernym within this many levels
    min_confidence: float = Field(0.0, ge=0, le=1)  # below: treated as unrelated
    class_synsets: dict[str, str] = {}  # class -> synset name / wnid, for names WordNet lacks
    wordnet: Optional[str] = None  # WordNet folder; null = NLTK's search path
    device: Literal["auto", "cpu", "cuda"] = "auto"


# --------------------------------------------------------------------------------------
# Segmentation branch (study 5): label DDPM -> post-processing -> SPADE -> mixes -> smp models
# --------------------------------------------------------------------------------------

SEG_MIX_NAME = re.compile(r"^(rep|add)(\d+)$")
SEG_MODELS = ("linknet", "fpn", "unet", "pan")


def _pair(v: list[int], key: str, low: int) -> list[int]:
    if len(v) != 2 or v[0] > v[1] or v[0] < low:
        raise ValueError(f"{key} must be [min, max] with {low} <= min <= max, got {v}")
    return v


class SegPrepareParams(Section):
    # fashion_mnist_scenes: the offline scene set built from Fashion-MNIST items (root = its files)
    # folder_pairs: root/images/<name>.<ext> with root/masks/<name>.png (LoveDA-style layout)
    source: Literal["fashion_mnist_scenes", "folder_pairs"] = "fashion_mnist_scenes"
    root: str = "/usr/share/datasets/fashion-mnist"
    # class names in mask-id order; for scenes, id 0 is the background, the rest are
    # Fashion-MNIST class names
    classes: list[str] = Field(default=["background", "trouser", "sneaker", "bag"], min_length=2)
    # folder_pairs only: one [r, g, b] mask colour per class; null = masks hold integer ids
    palette: Optional[list[list[int]]] = None
    ignore_index: int = Field(255, ge=0, le=255)
    image_size: int = Field(64, ge=32)
    train_count: int = Field(300, ge=1)
    val_count: int = Field(50, ge=1)
    test_count: int = Field(100, ge=1)
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.25, gt=0, lt=1)
    items_per_scene: list[int] = [2, 4]
    item_size: list[int] = [24, 40]
    silhouette_threshold: int = Field(16, ge=1, le=254)
    seed: int = 0

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dupes = sorted({c for c in v if v.count(c) > 1})
        if dupes:
            raise ValueError(f"class names must be unique, repeated: {dupes}")
        return v

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
        if self.source == "fashion_mnist_scenes" and self.item_size[1] > self.image_size:
            raise ValueError(
                f"seg_prepare.item_size = {self.item_size} exceeds image_size = {self.image_size}"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("seg_prepare.val_fraction + test_fraction must be below 1")
        return self


class SegTrainLabelsParams(DDPMTrainingParams):
    # the train_generator DDPM without classes; defaults sized for label maps on a CPU
    steps: int = Field(800, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0)
    ema_decay: float = Field(0.995, ge=0, lt=1)


class SegGenerateLabelsParams(Section):
    count: int = Field(60, ge=1)
    steps: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    # post-processing (at the label resolution)
    ramp_tolerance: float = Field(0.25, gt=0, le=0.5)
    structuring_element: Literal["square", "cross", "disk"] = "square"
    element_size: int = Field(2, ge=1)
    min_island_size: int = Field(4, ge=0)
    neighbourhood: int = Field(3, ge=3)

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (a window centred on the pixel), e.g. 3 or 5")
        return v


class SegTrainSpadeParams(Section):
    ngf: int = Field(16, ge=4)
    ndf: int = Field(32, ge=4)
    spade_hidden: int = Field(32, ge=4)
    upsamples: int = Field(3, ge=1)
    z_dim: int = Field(32, ge=0)
    d_layers: int = Field(3, ge=1)
    num_d: int = Field(2, ge=1)
    steps: int = Field(500, ge=1)
    batch_size: int = Field(8, ge=1)
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(4e-4, gt=0)
    lambda_feat: float = Field(10.0, ge=0)
    lambda_l1: float = Field(10.0, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SegGenerateImagesParams(Section):
    batch_size: int = Field(32, ge=1)
    seed: int = 0


class SegMixParams(Section):
    # repN: the real train size, N % of the pairs replaced by synthetic ones; addN: all real
    # pairs plus N % as many synthetic ones
    names: list[str] = Field(default=["rep0", "rep10"], min_length=1)
    seed: int = 0

    @field_validator("names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            m = SEG_MIX_NAME.match(name)
            if not m:
                raise ValueError(f"{name!r} must be repN (N % of real pairs replaced, 0..100) or addN")
            if m.group(1) == "rep" and int(m.group(2)) > 100:
                raise ValueError(f"{name!r}: at most 100 % of the pairs can be replaced")
        if len(set(v)) != len(v):
            raise ValueError(f"names must be unique: {v}")
        return v


class SegTrainParams(Section):
    models: list[Literal["linknet", "fpn", "unet", "pan"]] = Field(default=["linknet", "fpn"], min_length=1)
    encoder: str = "resnet18"
    # null: random init (offline); imagenet: smp's ImageNet encoder weights (download or cache)
    encoder_weights: Optional[Literal["imagenet"]] = None
    seeds: list[int] = Field(default=[0, 1], min_length=1)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    augment: bool = True
    num_threads: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SegEvaluateParams(Section):
    batch_size: int = Field(64, ge=1)
    overlay_count: int = Field(6, ge=1)


class SegSummarizeParams(Section):
    baseline: str = "rep0"
    confidence: float = Field(0.95, gt=0, lt=1)


class Params(Section):
    prepare: PrepareParams
    train_generator: TrainGeneratorParams
    generate: GenerateParams
    mix: MixParams
    train: TrainParams
    evaluate: EvaluateParams = EvaluateParams()
    fidelity: FidelityParams = FidelityParams()
    qc: QCParams = QCParams()
    report: ReportParams = ReportParams()
    summarize: SummarizeParams = SummarizeParams()
    hyponet: HyponetParams = HyponetParams()
    seg_prepare: SegPrepareParams = SegPrepareParams()
    seg_train_labels: SegTrainLabelsParams = SegTrainLabelsParams()
    seg_generate_labels: SegGenerateLabelsParams = SegGenerateLabelsParams()
    seg_train_spade: SegTrainSpadeParams = SegTrainSpadeParams()
    seg_generate_images: SegGenerateImagesParams = SegGenerateImagesParams()
    seg_mix: SegMixParams = SegMixParams()
    seg_train: SegTrainParams = SegTrainParams()
    seg_evaluate: SegEvaluateParams = SegEvaluateParams()
    seg_summarize: SegSummarizeParams = SegSummarizeParams()

    @model_validator(mode="after")
    def _seg_cross_checks(self) -> "Params":
        seg_checks(self)
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        per_class = self.mix.per_class or self.prepare.train_per_class
        real_need = [(per_class - fake_count(per_class, n), n) for n in self.mix.names if n.startswith("pct")]
        if real_need and max(real_need)[0] > self.prepare.train_per_class:
            need, worst = max(real_need)
            raise ValueError(
                f"mix {worst} with mix.per_class = {per_class} needs {need} real images per class, but "
                f"prepare.train_per_class = {self.prepare.train_per_class}: lower mix.per_class "
                "or raise prepare.train_per_class"
            )
        need_fake = max(synthetic_needed(n, per_class, self.prepare.train_per_class) for n in self.mix.names)
        if need_fake > self.generate.per_class:
            worst = max(self.mix.names, key=lambda n: synthetic_needed(n, per_class, self.prepare.train_per_class))
            raise ValueError(
                f"mix {worst} needs {need_fake} synthetic images per class, but generate.per_class = "
                f"{self.generate.per_class}: raise generate.per_class to at least {need_fake}"
            )
        lora_classes = {c for lo in self.generate.sd.loras for c in lo.classes}
        if lora_classes - set(self.prepare.classes):
            raise ValueError(
                f"generate.sd.loras name classes {sorted(lora_classes - set(self.prepare.classes))} that are "
                f"not in prepare.classes {self.prepare.classes}"
            )
        for key in ("class_templates", "class_names"):
            extra = sorted(set(getattr(self.generate.prompt, key)) - set(self.prepare.classes))
            if extra:
                raise ValueError(
                    f"generate.prompt.{key} names classes {extra} that are not in prepare.classes "
                    f"{self.prepare.classes}"
                )
        for test_set in self.evaluate.extra_test_sets:
            unknown = sorted(set(test_set.class_map.values()) - set(self.prepare.classes))
            if unknown:
                raise ValueError(
                    f"evaluate.extra_test_sets[{test_set.name}].class_map maps to {unknown}, which are not in "
                    f"prepare.classes {self.prepare.classes}"
                )
        if self.summarize.baseline not in self.mix.names:
            raise ValueError(
                f"summarize.baseline = {self.summarize.baseline!r} is not one of mix.names {self.mix.names}"
            )
        check_unet_shape("train_generator", self.train_generator)
        return self


def seg_synthetic_needed(name: str, n_real: int) -> tuple[int, int]:
    """(real, synthetic) pairs of segmentation mix ``name`` over ``n_real`` real train pairs.

    repN keeps the train size and replaces N % of it (rounded half up); addN keeps every real
    pair and adds N % as many synthetic ones.
    """
    m = SEG_MIX_NAME.match(name)
    if not m:
        raise ParamsError(f"seg_mix name {name!r} must look like rep10 or add50")
    fake = (n_real * int(m.group(2)) + 50) // 100
    return (n_real - fake, fake) if m.group(1) == "rep" else (n_real, fake)


def seg_checks(p: "Params") -> None:
    """Cross-section checks of the segmentation branch (raised as ValueError by pydantic)."""
    if p.seg_summarize.baseline not in p.seg_mix.names:
        raise ValueError(
            f"seg_summarize.baseline = {p.seg_summarize.baseline!r} is not one of seg_mix.names {p.seg_mix.names}"
        )
    tl = p.seg_train_labels
    check_unet_shape("seg_train_labels", tl)
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
    if p.seg_prepare.source == "fashion_mnist_scenes":
        need = {n: seg_synthetic_needed(n, p.seg_prepare.train_count)[1] for n in p.seg_mix.names}
        worst = max(need, key=need.get)
        if need[worst] > p.seg_generate_labels.count:
            raise ValueError(
                f"seg_mix {worst} needs {need[worst]} synthetic pairs, but seg_generate_labels.count = "
                f"{p.seg_generate_labels.count}: raise it to at least {need[worst]}"
            )


def fake_count(per_class: int, name: str) -> int:
    """Synthetic images per class in mix ``name`` (pctN rounds half up: 50 % of 225 = 113)."""
    kind, value = parse_mix_name(name)
    if kind == "pct":
        return (per_class * value + 50) // 100
    return 0  # aug: see synthetic_needed


def synthetic_needed(name: str, per_class: int, real_per_class: int) -> int:
    kind, value = parse_mix_name(name)
    if kind == "pct":
        return fake_count(per_class, name)
    return (real_per_class * value + 50) // 100


def parse_mix_name(name: str) -> tuple[str, int]:
    m = MIX_NAME.match(name)
    if not m:
        raise ParamsError(f"mix name {name!r} must look like pct60 or aug100")
    return m.group(1), int(m.group(2))


def _model_at(path) -> Any:
    """The schema class at ``path`` (section names, nested keys, list indices) below Params."""
    import typing

    model: Any = Params
    for part in path:
        if isinstance(part, int):  # a list item: the list's element type
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if args else model
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return model
        model = field.annotation
        while typing.get_origin(model) is Union:  # Optional[X] -> X
            model = next(a for a in typing.get_args(model) if a is not type(None))
    return model


def _format_errors(exc: ValidationError, raw: dict, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            model = _model_at(err["loc"][:-1])  # the (nested) section that has no such key
            allowed = ", ".join(getattr(model, "model_fields", {}))
            lines.append(f"  {loc}: unknown key (allowed: {allowed})")
            continue
        if err["type"] == "missing":
            lines.append(f"  {loc}: required key is missing")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        msg = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if "expected" in ctx:
            msg = f"{msg} (allowed: {ctx['expected']})"
        lines.append(f"  {loc or '(top level)'}{shown}: {msg}")
    return "\n".join(lines)


def validate_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_errors(exc, raw, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stage from the repository root")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return validate_params(raw, str(path))
