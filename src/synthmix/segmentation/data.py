"""Image/mask pairs: reading masks, the folder-pair layout, splits and pair manifests.

A pair manifest is an ordinary synthmix manifest (JSONL, see :mod:`synthmix.data.manifest`) whose
records carry one more path, ``mask``, stored relative to the manifest's directory like
``path`` (the image) and returned absolute by :func:`read_pairs`. ``label`` is always
``"segmentation"`` (the classes live in the mask); ``mask_sha256`` hashes the mask so the
manifest changes when either file changes.

Masks are single-channel PNGs of class ids ``0..K-1`` plus the ignore index (255 by default).
A folder of your own pairs (``seg_prepare.source: folder_pairs``) follows the LoveDA-style
layout ``ROOT/images/<name>.<ext>`` + ``ROOT/masks/<name>.png``; masks hold integer ids (grey
or palette PNG) or colours listed in ``seg_prepare.palette``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from synthmix.config import Params
from synthmix.core.atomic import PNG_OPTIONS, save_image
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.images import IMAGE_SUFFIXES, load_rgb
from synthmix.data.manifest import file_sha256, read_manifest, write_manifest

log = logging.getLogger(__name__)

PAIR_LABEL = "segmentation"


# --------------------------------------------------------------------------------------
# Pair manifests
# --------------------------------------------------------------------------------------


def pair_record(image: str | os.PathLike, mask: str | os.PathLike, source: str, **extra) -> dict:
    """A manifest record for one pair (absolute paths; :func:`write_pairs` makes them relative)."""
    return {
        "path": str(Path(image).resolve()),
        "label": PAIR_LABEL,
        "source": source,
        "sha256": file_sha256(image),
        "mask": str(Path(mask).resolve()),
        "mask_sha256": file_sha256(mask),
        **extra,
    }


def write_pairs(path: str | os.PathLike, records: Sequence[dict], base: str | os.PathLike | None = None) -> int:
    """Write a pair manifest atomically; ``path`` and ``mask`` become relative to its folder, or
    to ``base``: the folder the manifest will live in once its scratch folder is moved there."""
    if base is None:
        base = Path(path).parent.resolve()
        base.mkdir(parents=True, exist_ok=True)
        out = []
        for rec in records:
            if "mask" not in rec:
                raise DataError(f"pair record for {rec.get('path')} has no mask")
            out.append({**rec, "mask": Path(os.path.relpath(Path(rec["mask"]).resolve(), base)).as_posix()})
        return write_manifest(path, out)
    import json

    from synthmix.core.atomic import atomic_open

    base = Path(base).resolve()
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            if "mask" not in rec:
                raise DataError(f"pair record for {rec.get('path')} has no mask")
            rel = {k: Path(os.path.relpath(Path(rec[k]).resolve(), base)).as_posix() for k in ("path", "mask")}
            fh.write(json.dumps({**rec, **rel}) + "\n")
            n += 1
    return n


def read_pairs(path: str | os.PathLike) -> list[dict]:
    """Read a pair manifest; ``path`` and ``mask`` come back absolute."""
    base = Path(path).parent.resolve()
    records = read_manifest(path)
    for i, rec in enumerate(records, 1):
        if "mask" not in rec:
            raise DataError(f"{path} line {i}: record has no 'mask' (not a segmentation pair manifest)")
        rec["mask"] = os.path.normpath(base / rec["mask"])
    return records


def save_mask(mask: np.ndarray, path: str | os.PathLike) -> None:
    """A uint8 id map as a grey PNG, atomically."""
    save_image(Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8)), mode="L"), path, **PNG_OPTIONS)


def save_rgb(image: np.ndarray | Image.Image, path: str | os.PathLike) -> None:
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    im.info.clear()
    save_image(im.convert("RGB"), path, **PNG_OPTIONS)


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask PNG written by this package, as a uint8 ``(H, W)`` id array."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L") if im.mode not in ("L", "P") else im, dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read mask {path}: {exc}") from exc


# --------------------------------------------------------------------------------------
# Decoding user masks
# --------------------------------------------------------------------------------------


def decode_mask(
    mask: Image.Image, where: str, n_classes: int, ignore_index: int, palette: Sequence[Sequence[int]] | None,
    id_offset: int = 0,
) -> np.ndarray:
    """Class ids of a user mask; values outside ``0..n_classes-1`` and the ignore index are errors.

    Without a palette the mask must hold ids: a grey ("L"/"I") image's values, or a palette
    ("P") PNG's indices; with ``id_offset`` a value v is class ``v - id_offset`` and values below
    ``id_offset`` are no-data (the ignore index): LoveDA's masks hold 0 = no-data, 1..7 = classes.
    With ``palette`` (one colour per class) an RGB mask is mapped colour by colour; any other
    colour is an error naming the file.
    """
    if palette is None:
        if mask.mode in ("RGB", "RGBA"):
            a = np.asarray(mask.convert("RGB"))
            if not ((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()):
                raise DataError(
                    f"mask {where} is a colour image but seg_prepare.palette is null: list one [r, g, b] "
                    "colour per class in seg_prepare.palette, or save masks as grey id images"
                )
            ids = a[..., 0].astype(np.int64)
        elif mask.mode in ("L", "P", "I", "I;16"):
            ids = np.asarray(mask).astype(np.int64)
        else:
            ids = np.asarray(mask.convert("L")).astype(np.int64)
        raw = ids
        if id_offset:
            ids = np.where((raw < id_offset) | (raw == ignore_index), ignore_index, raw - id_offset)
        known = (ids < n_classes) | (ids == ignore_index)
        if not known.all():
            bad = sorted(int(v) for v in np.unique(raw[~known]))[:10]
            shift = f" + seg_prepare.id_offset {id_offset}" if id_offset else ""
            raise DataError(
                f"mask {where} holds values {bad} that are neither a class id (0..{n_classes - 1}{shift}, "
                f"seg_prepare.classes) nor seg_prepare.ignore_index = {ignore_index}"
            )
        return ids.astype(np.uint8)
    a = np.asarray(mask.convert("RGB")).astype(np.int64)
    code = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    out = np.full(code.shape, ignore_index, np.uint8)
    matched = np.zeros(code.shape, bool)
    for cid, (r, g, b) in enumerate(palette):
        hit = code == ((r << 16) | (g << 8) | b)
        out[hit] = cid
        matched |= hit
    if not matched.all():
        bad = [((int(c) >> 16) & 255, (int(c) >> 8) & 255, int(c) & 255) for c in np.unique(code[~matched])[:5]]
        raise DataError(
            f"mask {where} holds colours {bad} that are not in seg_prepare.palette "
            f"({[list(c) for c in palette]})"
        )
    return out


def resize_pair(image: Image.Image, ids: np.ndarray, size: int) -> tuple[Image.Image, np.ndarray]:
    """Resize the shorter side to ``size`` (image bicubic, mask nearest) and centre-crop square."""
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    box = (left, top, left + size, top + size)
    image = image.resize((nw, nh), Image.Resampling.BICUBIC).crop(box)
    mask = Image.fromarray(ids, mode="L").resize((nw, nh), Image.Resampling.NEAREST).crop(box)
    return image, np.asarray(mask, dtype=np.uint8)


def find_folder_pairs(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(image, mask) paths of ``root/images`` and ``root/masks`` matched by file stem.

    An image without a mask, or a mask without an image, is an error naming the files.
    """
    root = Path(root)
    img_dir, mask_dir = root / "images", root / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(
                f"{d} does not exist: seg_prepare.source folder_pairs expects seg_prepare.root = {root} "
                "to hold images/ and masks/ with one mask per image (same file name stem)"
            )
    images = {p.stem: p for p in sorted(img_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"images without a mask: {[images[s].name for s in no_mask[:10]]}")
        if no_image:
            parts.append(f"masks without an image: {[masks[s].name for s in no_image[:10]]}")
        raise DataError(f"missing pairs under {root}: " + "; ".join(parts))
    if not images:
        raise DataError(f"{img_dir} holds no images")
    return [(images[s], masks[s]) for s in sorted(images)]


def load_folder_pair(
    image_path: Path, mask_path: Path, n_classes: int, ignore_index: int,
    palette: Sequence[Sequence[int]] | None, size: int, id_offset: int = 0,
) -> tuple[Image.Image, np.ndarray]:  # fmt: skip
    """One user pair, checked (same size, known mask values) and resized to ``size``."""
    image = load_rgb(image_path)
    try:
        with Image.open(mask_path) as m:
            m.load()
            mask = m
    except OSError as exc:
        raise DataError(f"cannot read mask {mask_path}: {exc}") from exc
    if image.size != mask.size:
        raise DataError(
            f"image {image_path} is {image.size[0]}x{image.size[1]} but its mask {mask_path} is "
            f"{mask.size[0]}x{mask.size[1]}: a mask must have its image's size"
        )
    ids = decode_mask(mask, str(mask_path), n_classes, ignore_index, palette, id_offset)
    return resize_pair(image, ids, size)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A deterministic train/val/test split of ``n`` pairs (each part non-empty)."""
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise DataError(
            f"{n} pairs are too few for seg_prepare.val_fraction = {val_fraction} and test_fraction = "
            f"{test_fraction}: each split needs at least one pair"
        )
    order = np.random.default_rng(derive_seed("seg-split", seed)).permutation(n)
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test : n_test + n_val]),
            "train": np.sort(order[n_test + n_val :])}  # fmt: skip


# --------------------------------------------------------------------------------------
# Tensors for training
# --------------------------------------------------------------------------------------


def load_pairs_arrays(records: Sequence[dict], size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All pairs as ``(N, H, W, 3)`` uint8 images and ``(N, H, W)`` uint8 masks.

    ``size`` checks every pair has that square size (the prepare/generate stages made it so).
    """
    images, masks = [], []
    for rec in records:
        im = np.asarray(load_rgb(rec["path"]), dtype=np.uint8)
        m = load_mask(rec["mask"])
        if im.shape[:2] != m.shape:
            raise DataError(f"image {rec['path']} is {im.shape[1]}x{im.shape[0]} but mask {rec['mask']} is "
                            f"{m.shape[1]}x{m.shape[0]}")  # fmt: skip
        if size is not None and m.shape != (size, size):
            raise DataError(f"pair {rec['path']} is {m.shape[1]}x{m.shape[0]}, expected {size}x{size}: "
                            "re-run seg_prepare / the generate stages with the current seg_prepare.image_size")  # fmt: skip
        images.append(im)
        masks.append(m)
    if not images:
        raise DataError("no pairs to load")
    return np.stack(images), np.stack(masks)


def seg_mix_stage(params: Params, name: str, *, real: Input, synthetic: Input, out: Output) -> None:
    """Stage seg_mix: the pair manifest of segmentation mix ``name`` (repN / addN)."""
    from synthmix.mixes import build_seg_mix

    if name not in params.seg_mix.names:
        raise ParamsError(f"{name} is not one of seg_mix.names {params.seg_mix.names}")
    records = build_seg_mix(name, read_pairs(real), read_pairs(synthetic), params.seg_mix.seed)
    n = write_pairs(out, records)
    print(f"seg_mix {name}: {n} pairs, {sum(r['source'] == 'synthetic' for r in records)} synthetic")
