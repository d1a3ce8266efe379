"""Loading user images robustly: any common mode becomes RGB, EXIF orientation is applied."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from synthmix.core.errors import DataError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert grey, grey+alpha, RGBA, palette (with or without transparency) and CMYK to RGB.

    Transparent pixels are composited on white, which is what a viewer shows and what a
    photo-trained model expects; a plain ``convert("RGB")`` would turn them black.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping.
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() or 1.0
        image = Image.fromarray((arr * (255.0 / hi)).round().astype("uint8"), mode="L")
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike | Mapping) -> Image.Image:
    """Open, fully decode and convert an image; a corrupt file raises DataError naming it and
    saying how to repair it.

    ``path`` is a file path or a manifest record (dict): a record with a ``shard`` field is read
    from that shard (by its ``key``, checked against its ``sha256``; see
    :mod:`synthmix.data.shards`), any other record from its ``path``."""
    if isinstance(path, Mapping):
        if path.get("shard"):
            return _load_sharded(path)
        path = path["path"]
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except FileNotFoundError as exc:
        raise DataError(f"cannot read image {path}: it does not exist; {repair_hint(path)}") from exc
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc} (truncated, empty or not an image); "
                        f"{repair_hint(path)}") from exc


def _load_sharded(record: Mapping) -> Image.Image:
    from synthmix.data.shards import read_image_bytes, restore_hint

    data = read_image_bytes(record)  # DataError for a missing shard or key, a truncated or corrupt member
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {record['key']!r} in shard {record['shard']}: {exc}; "
                        f"{restore_hint(record['shard'])}") from exc


def repair_hint(path: str | os.PathLike, dvc_yaml: str | os.PathLike = "dvc.yaml") -> str:
    """How to get a damaged file back: from the DVC cache or by re-running the stage whose
    output (in ``dvc_yaml``) holds it; for a file of no stage, replace it."""
    stage, out = _writing_stage(path, dvc_yaml)
    if stage is None:
        return "replace or remove the file (a file that a pipeline stage wrote comes back with `dvc checkout --force <its output>`)"
    return (f"it belongs to {out}, the output of stage {stage}: restore it from the DVC cache with "
            f"`dvc checkout --force {out}`, or rebuild it with `dvc repro -f {stage}`")


def _writing_stage(path: str | os.PathLike, dvc_yaml: str | os.PathLike) -> tuple[str | None, str | None]:
    """(stage, out) of the dvc.yaml output that contains ``path``, or (None, None)."""
    import yaml

    try:
        stages = yaml.safe_load(open(dvc_yaml, encoding="utf-8"))["stages"]
        target = os.path.abspath(path)
        root = os.path.dirname(os.path.abspath(dvc_yaml))
        for name, body in stages.items():
            for entry in body.get("outs") or []:
                out = next(iter(entry)) if isinstance(entry, dict) else str(entry)
                if "${" in out:
                    continue
                full = os.path.join(root, out)
                if target == full or target.startswith(full.rstrip(os.sep) + os.sep):
                    return name, out
    except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        pass  # no dvc.yaml here (a library call): the generic advice
    return None, None


def load_images(records: list[dict], classes: list[str], size: int, desc: str = "loading") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``records`` into (uint8 N x 3 x size x size, int64 labels)."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({r["label"] for r in records} - set(index))
    if unknown:
        raise DataError(f"images with labels {unknown} are not among the classes {classes}")
    if not records:
        raise DataError(f"no images to {desc}")
    data = np.empty((len(records), size, size, 3), dtype=np.uint8)
    for i, rec in enumerate(tqdm(records, desc=desc, unit="img", leave=False)):
        img = load_rgb(rec["path"])
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        data[i] = np.asarray(img)
    labels = torch.tensor([index[r["label"]] for r in records], dtype=torch.long)
    return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(), labels
