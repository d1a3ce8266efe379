"""Contact sheets: a grid of thumbnails (optionally captioned) in one PNG, to look at image sets.

Small images (28-32 px Fashion-MNIST, CIFAR) are enlarged with nearest-neighbour so their
pixels stay visible; large ones (512 px Stable Diffusion) are shrunk with Lanczos.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from synthmix.core.atomic import save_image
from synthmix.data.images import load_rgb


def _thumb(image: Image.Image, size: int) -> Image.Image:
    image = image.convert("RGB")
    w, h = image.size
    scale = size / max(w, h)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def contact_sheet(
    images: Sequence[Image.Image | str | os.PathLike],
    captions: Optional[Sequence[str]] = None,
    cols: int = 8,
    thumb: int = 64,
    title: Optional[str] = None,
) -> Image.Image:
    """One image with ``images`` in a grid of ``cols`` columns, each ``thumb`` px, captions below."""
    font = ImageFont.load_default()
    n = len(images)
    cols = max(1, min(cols, n)) if n else 1
    rows = max(1, math.ceil(n / cols))
    cap_h = 12 * max((len(c.split("\n")) for c in captions), default=0) if captions else 0
    title_h = 16 if title else 0
    pad = 2
    sheet = Image.new("RGB", (cols * (thumb + pad) + pad, title_h + rows * (thumb + cap_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 2), title, fill=(0, 0, 0), font=font)
    if not n:
        draw.text((pad, title_h + 4), "(none)", fill=(90, 90, 90), font=font)
    for i, img in enumerate(images):
        if not isinstance(img, Image.Image):
            img = load_rgb(img)
        r, c = divmod(i, cols)
        x, y = pad + c * (thumb + pad), title_h + pad + r * (thumb + cap_h + pad)
        sheet.paste(_thumb(img, thumb), (x, y))
        if captions:
            draw.multiline_text((x, y + thumb), captions[i], fill=(160, 0, 0), font=font, spacing=1)
    return sheet


def write_contact_sheet(path: str | os.PathLike, images, captions=None, cols: int = 8, thumb: int = 64,
                        title: Optional[str] = None) -> None:
    """:func:`contact_sheet`, saved atomically as PNG."""
    save_image(contact_sheet(images, captions, cols, thumb, title), path)
