"""Device and dtype choice: CUDA when present (bf16/fp16 autocast), otherwise CPU in fp32."""

from __future__ import annotations

import logging

import torch

from synthmix.core.errors import SynthmixError

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise SynthmixError("device = cuda was requested but no CUDA GPU is visible: set it to auto or cpu")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    log.info("using device %s", device)
    return device


def autocast_dtype(device: torch.device, mixed_precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device``, or None for plain fp32."""
    if mixed_precision == "no" or device.type != "cuda":
        return None
    if mixed_precision == "fp16":
        return torch.float16
    if mixed_precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16

