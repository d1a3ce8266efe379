"""Training images of the personalization stages: which ones, their captions, their pixels.

- **Choice**: a seeded choice from the real train split's manifest, per class
  (``images_per_class``) or over the whole split (``images_total``), each class's choice seeded
  by (seed, class) so it does not depend on the other classes.
- **Captions** (LoRA): a template with ``{class}``, a caption file (JSONL or CSV, matched by the
  manifest's path, the file name or the sha256), or BLIP (transformers) from local weights.
- **Pixels**: RGB, centre-cropped to a square, scaled to the training resolution, bicubic or
  Real-ESRGAN (spandrel loads the user's weights file; the network is not re-implemented here),
  as float tensors in [-1, 1].
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from synthmix.core.errors import DataError, MissingAssetError
from synthmix.core.seeding import derive_seed
from synthmix.data.images import load_rgb
from synthmix.data.manifest import file_sha256

log = logging.getLogger(__name__)


def select_images(records: Sequence[dict], classes: Sequence[str], per_class: int | None,
                  total: int | None, seed: int, key: str) -> list[dict]:
    """A seeded choice of training records, class-major in ``classes`` order."""
    by_class: dict[str, list[dict]] = {c: [] for c in classes}
    for rec in records:
        if rec["label"] in by_class:
            by_class[rec["label"]].append(rec)
    for c, recs in by_class.items():
        if not recs:
            raise DataError(f"the real train split has no images of class {c!r}")
        recs.sort(key=lambda r: (r["sha256"], r["path"]))  # manifest order does not matter
    if total is not None:
        pool = [r for c in classes for r in by_class[c]]
        if total > len(pool):
            raise DataError(f"{key.replace('images_per_class', 'images_total')} = {total}, but the real train split "
                            f"has {len(pool)} images: lower it")
        chosen = random.Random(derive_seed("personalize-images", seed)).sample(pool, total)
        order = {id(r): i for i, r in enumerate(pool)}
        return sorted(chosen, key=lambda r: order[id(r)])
    out = []
    for c in classes:
        recs = by_class[c]
        if per_class is None:
            out += recs
            continue
        if per_class > len(recs):
            raise DataError(f"{key} = {per_class}, but class {c!r} has {len(recs)} training images: lower it")
        idx = sorted(random.Random(derive_seed("personalize-images", seed, c)).sample(range(len(recs)), per_class))
        out += [recs[i] for i in idx]
    return out


def class_text(label: str) -> str:
    return label.replace("_", " ")


# ------------------------------------------------------------------------------------------ captions
def read_caption_file(path: str | os.PathLike) -> dict[str, str]:
    """image key -> caption, from JSONL (``{"image": ..., "caption": ...}``) or CSV (image,caption)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingAssetError(f"train_lora.caption_file = {str(path)!r}: no such file")
    out: dict[str, str] = {}
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and not {"image", "caption"} <= set(rows[0]):
            raise DataError(f"{path}: a CSV caption file needs the columns image,caption (has {list(rows[0])})")
        pairs = [(r["image"], r["caption"]) for r in rows]
    else:
        pairs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                pairs.append((obj["image"], obj["caption"]))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"{path} line {n}: expected {{\"image\": ..., \"caption\": ...}} ({exc})") from exc
    for image, caption in pairs:
        out[str(image).strip()] = str(caption).strip()
    return out


def _lookup(captions: dict[str, str], rec: dict, manifest_dir: Path) -> str | None:
    rel = Path(os.path.relpath(rec["path"], manifest_dir)).as_posix()
    for k in (rec["sha256"], rel, Path(rec["path"]).as_posix(), Path(rec["path"]).name):
        if k in captions:
            return captions[k]
    return None


def blip_captions(model: str | None, images: Sequence[Image.Image], device: torch.device,
                  key: str = "train_lora.caption_model") -> list[str]:
    """Greedy BLIP captions (transformers' BlipForConditionalGeneration) from local weights."""
    if not model:
        raise MissingAssetError(f"{key} is not set: caption = blip needs BLIP weights, e.g. a local copy of "
                                "Salesforce/blip-image-captioning-large (save_pretrained folder)")
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        processor = BlipProcessor.from_pretrained(str(Path(model).expanduser()) if Path(model).expanduser().exists()
                                                  else model, local_files_only=True)
        net = BlipForConditionalGeneration.from_pretrained(
            str(Path(model).expanduser()) if Path(model).expanduser().exists() else model, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 -- missing files, no cache: all mean "not available"
        raise MissingAssetError(f"{key} = {model!r}: BLIP weights are not available locally "
                                f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    from tqdm.auto import tqdm

    net = net.to(device).eval()
    out = []
    with torch.no_grad():
        for image in tqdm(images, desc="BLIP captions", unit="img"):
            inputs = processor(images=image, return_tensors="pt").to(device)
            ids = net.generate(**inputs, max_new_tokens=30, do_sample=False, num_beams=1)
            out.append(processor.decode(ids[0], skip_special_tokens=True).strip())
    return out


def captions_for(params, records: Sequence[dict], images: Sequence[Image.Image], manifest: Path,
                 device: torch.device) -> list[str]:
    """One caption per chosen record (train_lora.caption)."""
    def fill(label: str, found: str | None) -> str:
        tpl = params.caption_template
        if found is not None:
            if "{caption}" not in tpl:
                return found
            tpl = tpl.replace("{caption}", found)
        return tpl.replace("{class}", class_text(label))

    if params.caption == "template":
        return [fill(r["label"], None) for r in records]
    if params.caption == "file":
        table = read_caption_file(params.caption_file)
        found = [_lookup(table, r, manifest.parent.resolve()) for r in records]
        missing = [Path(r["path"]).name for r, f in zip(records, found) if f is None]
        if missing:
            raise DataError(f"train_lora.caption_file = {params.caption_file!r} has no caption for {len(missing)} of "
                            f"the chosen images (first: {missing[:3]}); key lines by the manifest path, file name "
                            "or sha256")
        return [fill(r["label"], f) for r, f in zip(records, found)]
    return [fill(r["label"], c) for r, c in zip(records, blip_captions(params.caption_model, images, device))]


# ------------------------------------------------------------------------------------------ pixels
def square(image: Image.Image) -> Image.Image:
    """The centred square crop (the shorter side)."""
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return image.crop((left, top, left + s, top + s))


class Upsampler:
    """Scales square RGB images to ``resolution``: bicubic, or Real-ESRGAN (spandrel) then bicubic."""

    def __init__(self, method: str, resolution: int, weights: str | None, device: torch.device, key: str):
        self.method, self.resolution, self.device = method, resolution, device
        self.model = None
        self.weights_sha256 = None
        if method == "realesrgan":
            path = Path(weights or "").expanduser()
            if not weights or not path.is_file():
                raise MissingAssetError(
                    f"{key}.realesrgan_weights = {weights!r}: file not found. upsample = realesrgan needs Real-ESRGAN "
                    "weights you supply (e.g. RealESRGAN_x4plus.pth from the Real-ESRGAN releases), or set "
                    f"{key}.upsample = bicubic")
            import spandrel

            try:
                desc = spandrel.ModelLoader().load_from_file(str(path))
            except Exception as exc:  # noqa: BLE001 -- unsupported architecture, corrupt file
                raise MissingAssetError(f"{key}.realesrgan_weights = {weights!r} could not be loaded by spandrel: "
                                        f"{type(exc).__name__}: {str(exc)[:300]}") from exc
            if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.scale < 2:
                raise MissingAssetError(f"{key}.realesrgan_weights = {weights!r} is not an upscaling model "
                                        f"({type(desc).__name__}, scale {getattr(desc, 'scale', '?')})")
            self.model = desc.to(device).eval()
            self.weights_sha256 = file_sha256(path)

    def __call__(self, image: Image.Image) -> Image.Image:
        image = square(image)
        if self.model is not None:
            while image.size[0] < self.resolution:
                x = torch.from_numpy(_to_array(image)).permute(2, 0, 1)[None].float().div(255).to(self.device)
                with torch.no_grad():
                    y = self.model(x).clamp(0, 1)
                image = Image.fromarray(y[0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy())
        if image.size != (self.resolution, self.resolution):
            image = image.resize((self.resolution, self.resolution), Image.BICUBIC)
        return image


def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8).copy()


def load_pixels(records: Sequence[dict], upsample: Upsampler) -> tuple[list[Image.Image], torch.Tensor]:
    """(the original RGB images, the prepared ``(N, 3, R, R)`` float tensor in [-1, 1])."""
    originals = [load_rgb(r["path"]) for r in records]
    arrays = [_to_array(upsample(im)) for im in originals]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return originals, x / 127.5 - 1.0
