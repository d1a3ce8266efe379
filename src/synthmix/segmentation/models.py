"""The segmentation networks ``seg_train.models`` can name, and how each is built.

A light registry (segmentation-models-pytorch is imported only when a model is built), so the
params schema takes its allowed model names from here: adding a network is one entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from synthmix.core.errors import MissingAssetError, ParamsError

if TYPE_CHECKING:
    import torch

# name -> the smp architecture class (an encoder-decoder taking encoder_name/encoder_weights)
SMP_ARCHITECTURES = {"linknet": "Linknet", "fpn": "FPN", "unet": "Unet", "pan": "PAN"}


def _smp_builder(arch: str) -> Callable[..., "torch.nn.Module"]:
    def build(encoder: str, encoder_weights: str | None, n_classes: int) -> "torch.nn.Module":
        import segmentation_models_pytorch as smp

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


SEG_MODELS: dict[str, Callable[..., "torch.nn.Module"]] = {
    name: _smp_builder(arch) for name, arch in SMP_ARCHITECTURES.items()
}


def build_model(name: str, encoder: str, encoder_weights: str | None, n_classes: int) -> "torch.nn.Module":
    if name not in SEG_MODELS:
        raise ParamsError(f"seg_train.models: {name!r} is not one of {sorted(SEG_MODELS)}")
    return SEG_MODELS[name](encoder, encoder_weights, n_classes)
