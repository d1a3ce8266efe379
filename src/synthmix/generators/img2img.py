"""Image-to-image variants of real images: the jobs, their strengths, and the leakage check.

DA-Fusion (Trabucco et al., ICLR 2024) edits every real image into M variants that keep its
layout, each with a strength t0 drawn from a small set ("randomized intensity"). Here a variant
is a :class:`~synthmix.generators.base.Job` that names its source image; the backends turn it
into pixels (``ddpm``: SDEdit with the class-conditional DDPM; ``sd`` / ``sdxl``: diffusers'
img2img pipelines built from the loaded text-to-image pipeline).

Everything random about a variant is seeded by (``generate.seed``, the source image's sha256,
the variant number): the same real image gets the same variants in every few-shot subset,
trial and resume, whatever else is generated beside it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from synthmix.core.errors import DataError, ParamsError
from synthmix.core.seeding import derive_seed
from synthmix.data.images import load_rgb
from synthmix.data.manifest import file_sha256
from synthmix.generators.base import Job


def variant_seed(seed: int, source_sha256: str, variant: int) -> int:
    """The noise seed of variant ``variant`` of the image with ``source_sha256``."""
    return derive_seed("img2img", int(seed), str(source_sha256), int(variant))


def draw_strength(seed: int, source_sha256: str, variant: int, strengths: Sequence[float],
                  probs: Sequence[float] | None) -> float:
    """The strength of one variant: a draw from ``strengths`` with ``probs`` (None = uniform)."""
    rng = np.random.default_rng(derive_seed("strength", int(seed), str(source_sha256), int(variant)))
    return float(strengths[int(rng.choice(len(strengths), p=None if probs is None else list(probs)))])


def make_variant_jobs(sources: Sequence[dict], model_classes: Sequence[str], per_image: int, seed: int,
                      strengths: Sequence[float], probs: Sequence[float] | None) -> list[Job]:
    """``per_image`` jobs per source record (manifest lines with path, label, sha256), class-major
    in ``model_classes`` order and in the sources' order within a class."""
    ids = {c: i for i, c in enumerate(model_classes)}
    unknown = sorted({r["label"] for r in sources} - set(ids))
    if unknown:
        raise DataError(f"real images of classes {unknown} but the generator knows only {list(model_classes)}: "
                        "re-run train_generator on these classes")
    shas = [r["sha256"] for r in sources]
    if len(set(shas)) != len(shas):
        raise DataError("two source images have the same sha256: variants are named by it; "
                        "drop exact copies (prepare.duplicates: drop)")
    jobs: list[Job] = []
    for label in model_classes:
        index = 0
        for rec in (r for r in sources if r["label"] == label):
            for v in range(per_image):
                jobs.append(Job(label, ids[label], index, variant_seed(seed, rec["sha256"], v),
                                source_path=str(rec["path"]), source_sha256=rec["sha256"], variant=v,
                                strength=draw_strength(seed, rec["sha256"], v, strengths, probs)))
                index += 1
    return jobs


def load_source(job: Job, size: tuple[int, int], mode: str) -> Image.Image:
    """The job's real image as ``mode`` ("L" / "RGB") at ``size`` (bicubic), after checking that
    the file is still the one the manifest recorded (a changed source would silently change
    every variant)."""
    if file_sha256(job.source_path) != job.source_sha256:
        raise DataError(f"{job.source_path} changed since its manifest was written (sha256 differs): "
                        "re-run the stage that wrote it (dvc repro -f prepare) or dvc checkout")
    image = load_rgb(job.source_path)
    if mode == "L":
        image = image.convert("L")
    return image if image.size == tuple(size) else image.resize(tuple(size), Image.BICUBIC)


def group_by_strength(jobs: Sequence[Job]) -> dict[float | None, list[int]]:
    """Positions of ``jobs`` by strength (one pipeline call runs one strength)."""
    groups: dict[float | None, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.strength, []).append(i)
    return groups


def class_name_pattern(names: Iterable[str]) -> re.Pattern:
    """A case-insensitive pattern matching any of ``names`` as whole words (``_`` = a space)."""
    words = sorted({n.replace("_", " ").strip().lower() for n in names if n.strip()}, key=len, reverse=True)
    alternatives = [r"[\s_\-]+".join(map(re.escape, w.split())) for w in words]
    return re.compile(r"(?<![a-z0-9])(" + "|".join(alternatives) + r")(?![a-z0-9])", re.IGNORECASE)


def check_no_class_names(prompts: Iterable[tuple[str, str]], names: Iterable[str]) -> None:
    """Data-centric leakage control (DA-Fusion): stop when a prompt contains a class name.

    ``prompts``: (class, prompt text with the learnt tokens already in place); a token such as
    ``<t_shirt_top>`` is allowed, it carries no name to the text encoder beyond its own vectors.
    """
    pattern = class_name_pattern(names)
    for label, prompt in prompts:
        visible = re.sub(r"<[^<>\s]+>", " ", prompt)
        hit = pattern.search(visible)
        if hit:
            raise ParamsError(
                f"the img2img prompt of class {label!r} names a class ({hit.group(0)!r}): {prompt!r}. "
                "generate.img2img.forbid_class_names is on (DA-Fusion's leakage control): use "
                "generate.sd.textual_inversion so {class} becomes the learnt token, remove the name from "
                "generate.prompt.template / class_templates / wildcards, or set forbid_class_names: false"
            )


def variant_fields(job: Job) -> dict:
    """Manifest fields of an image-to-image job (none for a text-to-image one)."""
    if not job.is_img2img:
        return {}
    # relative to the working directory (the project root for stages): no machine path in outputs
    return {"source_path": Path(os.path.relpath(job.source_path)).as_posix(), "source_sha256": job.source_sha256,
            "variant": job.variant, "strength": job.strength}
