"""Loading user images robustly: any common mode becomes RGB, EXIF orientation is applied."""

from __future__ import annotations

import os

from PIL import Image, ImageOps, UnidentifiedImageError

from synthmix.core.errors import DataError

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


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image; a corrupt file raises DataError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
