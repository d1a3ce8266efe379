"""The erase stage's output, as generation and the personalisation trainers read it: the ESD-erased
UNet (:mod:`synthmix.personalize.erase` trains it), checked against the model it came from."""

from __future__ import annotations

from pathlib import Path

import torch

from synthmix.core.errors import DataError

ERASE_FORMAT = "synthmix-erased-unet/1"
INDEX = "index.json"
UNET_DIR = "unet"


def load_erased_unet(folder: Path, model_sha256: str | None, device: torch.device, dtype: torch.dtype):
    """The erased UNet of the erase stage, checked against the model it was made from."""
    import json

    from diffusers import UNet2DConditionModel

    index = Path(folder) / INDEX
    try:
        info = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{index} is missing or unreadable ({exc}): run dvc repro erase") from exc
    if info.get("format") != ERASE_FORMAT or not info.get("erased"):
        raise DataError(f"{folder} holds no erased UNet ({info.get('reason', 'unknown format')}): set "
                        "generate.sd.erased: true and run dvc repro erase")
    if model_sha256 is not None and info.get("model_sha256") not in (None, model_sha256) \
            and not str(info.get("model_sha256", "")).startswith("given:"):
        raise DataError(f"{folder} was erased from another model ({info.get('model')}): run dvc repro erase")
    try:
        return UNet2DConditionModel.from_pretrained(Path(folder) / UNET_DIR, use_safetensors=True,
                                                    torch_dtype=dtype).to(device)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load the erased UNet in {folder} ({exc}): run dvc repro -f erase") from exc


def erased_sha256(folder: str | Path) -> str:
    """The erased UNet's weights hash (what generation records and keys its scratch folder on)."""
    from synthmix.data.manifest import file_sha256

    path = Path(folder) / UNET_DIR / "diffusion_pytorch_model.safetensors"
    if not path.is_file():
        raise DataError(f"{folder} holds no erased UNet ({path.name} missing): set generate.sd.erased: true and run "
                        "dvc repro erase")
    return file_sha256(path)
