"""The segmentation networks ``seg_train.models`` can name, and how each is built.

segmentation-models-pytorch and the network modules are imported only when a model is built.
The params schema's names are :data:`synthmix.config.choices.SEG_MODELS`, checked against this
registry at import: adding a network is one entry here and one there.

- ``bisenetv2``, ``ppliteseg_t``, ``ppliteseg_b``: the source study's real-time networks in
  plain PyTorch (:mod:`synthmix.segmentation.networks`); in training they also return
  auxiliary logits. ``seg_train.encoder`` / ``encoder_weights`` do not apply to them;
  ``backbone_weights`` loads a local file into their backbone.
- ``linknet``, ``fpn``, ``unet``, ``pan``: smp encoder-decoders on ``seg_train.encoder``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from synthmix.config.choices import SEG_MODELS as SEG_MODEL_NAMES
from synthmix.core.errors import MissingAssetError, ParamsError

if TYPE_CHECKING:
    import torch

# name -> the smp architecture class (an encoder-decoder taking encoder_name/encoder_weights)
SMP_ARCHITECTURES = {"linknet": "Linknet", "fpn": "FPN", "unet": "Unet", "pan": "PAN"}


def _smp_builder(arch: str) -> Callable[..., "torch.nn.Module"]:
    def build(encoder: str, encoder_weights: str | None, n_classes: int,
              backbone_weights: str | None = None) -> "torch.nn.Module":
        import segmentation_models_pytorch as smp

        if backbone_weights is not None:
            raise ParamsError(f"seg_train.backbone_weights is for {sorted(NATIVE)}; smp's {arch} takes "
                              "seg_train.encoder_weights")  # fmt: skip

        names = smp.encoders.get_encoder_names()
        if encoder not in names:
            raise ParamsError(f"seg_train.encoder = {encoder!r} is not an smp encoder (e.g. resnet18, resnet34, "
                              f"mobilenet_v2, efficientnet-b0; {len(names)} in all)")  # fmt: skip
        try:
            return getattr(smp, arch)(encoder_name=encoder, encoder_weights=encoder_weights, classes=n_classes,
                                      in_channels=3)
        except Exception as exc:  # weights unknown for this encoder, or the download failed (offline)
            if encoder_weights is None:
                raise
            raise MissingAssetError(
                f"seg_train.encoder_weights = {encoder_weights!r}: the {encoder} ImageNet weights could not be "
                f"loaded ({type(exc).__name__}: {str(exc)[:200]}). smp downloads them from the Hugging Face Hub "
                f"(smp-hub/{encoder}.imagenet) on first use into ~/.cache/huggingface; this machine may be offline. "
                "Set seg_train.encoder_weights: null to train from scratch, or copy that cache from a machine online"
            ) from exc

    return build


def _bisenetv2(n_classes: int) -> "torch.nn.Module":
    from synthmix.segmentation.networks.bisenetv2 import BiSeNetV2

    return BiSeNetV2(n_classes)


def _ppliteseg(size: str) -> Callable[[int], "torch.nn.Module"]:
    def make(n_classes: int) -> "torch.nn.Module":
        from synthmix.segmentation.networks.ppliteseg import PPLiteSeg

        return PPLiteSeg(n_classes, size)

    return make


# name -> n_classes -> network (random init); every one has a ``backbone`` submodule
NATIVE: dict[str, Callable[[int], "torch.nn.Module"]] = {
    "bisenetv2": _bisenetv2, "ppliteseg_t": _ppliteseg("t"), "ppliteseg_b": _ppliteseg("b"),
}  # fmt: skip


def _native_builder(name: str) -> Callable[..., "torch.nn.Module"]:
    def build(encoder: str, encoder_weights: str | None, n_classes: int,
              backbone_weights: str | None = None) -> "torch.nn.Module":
        model = NATIVE[name](n_classes)
        if backbone_weights is not None:
            from synthmix.core.weights import load_state_dict_file
            from synthmix.segmentation.networks.common import load_backbone

            param = "seg_train.backbone_weights"
            tensors = load_state_dict_file(backbone_weights, param)
            try:
                load_backbone(model, tensors, f"{param} = {backbone_weights!r} for {name}")
            except ValueError as exc:
                raise MissingAssetError(f"{exc}: the file does not hold {name}'s backbone (tensor names relative "
                                        "to model.backbone, or prefixed 'backbone.')") from None  # fmt: skip
        return model

    return build


SEG_MODELS: dict[str, Callable[..., "torch.nn.Module"]] = {
    **{name: _native_builder(name) for name in NATIVE},
    **{name: _smp_builder(arch) for name, arch in SMP_ARCHITECTURES.items()},
}

if tuple(SEG_MODELS) != SEG_MODEL_NAMES:
    raise ImportError(f"segmentation models {list(SEG_MODELS)} != the names in config/choices.py {list(SEG_MODEL_NAMES)}")


def build_model(name: str, encoder: str, encoder_weights: str | None, n_classes: int,
                backbone_weights: str | None = None) -> "torch.nn.Module":
    if name not in SEG_MODELS:
        raise ParamsError(f"seg_train.models: {name!r} is not one of {sorted(SEG_MODELS)}")
    return SEG_MODELS[name](encoder, encoder_weights, n_classes, backbone_weights)
