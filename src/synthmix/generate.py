"""Generate the synthetic image set (stage ``generate``): N images per class plus a manifest.

Image ``i`` of class ``c`` always uses seed ``image_seed(params.seed, c, i)``, so its pixels
depend only on the model and the sampling parameters, never on the batch size, the resume
point or how many processes share the work.

Resume and atomicity. DVC deletes a stage's outputs before re-running it, so the work is
done in a scratch folder ``<scratch_root>/generate-<hash12>`` (default scratch root: the
folder ``.partial`` next to ``out_dir``, i.e. ``data/.partial`` for ``data/synthetic``).
The hash covers everything that determines image content (backend, model weights hash,
sampler, seed, steps, guidance scale), so a re-run after an interruption finds its
finished images, verifies they decode and generates only the missing ones. Every PNG is
written atomically. At the end the manifest is written and the scratch folder is renamed
to ``out_dir``.

Backends (:mod:`synthmix.generators.base`): ``params.backend`` names one in its registry.

Writing. PNG encoding and writing run on ``params.write_threads`` background threads
(:class:`ImageWriter`) while the backend samples the next batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from synthmix.config import Params
from synthmix.core.atomic import save_image
from synthmix.core.device import pick_device
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.resume import image_ok, move_into_place, prune
from synthmix.core.seeding import image_seed
from synthmix.data.manifest import file_sha256, write_manifest
from synthmix.generators.base import IMAGES, Backend, Job
from synthmix.generators.registry import open_backend

if TYPE_CHECKING:
    from synthmix.config.sections.generate import GenerateParams

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


class ImageWriter:
    """PNG encoding and writing on background threads, overlapped with sampling.

    Why: encoding a 512 px PNG costs tens of milliseconds of CPU, which would otherwise
    leave the GPU idle between batches; zlib releases the GIL, so threads run in parallel
    with the sampler. At most ``max_pending`` images wait (bounded memory); the first error
    of a worker is re-raised in the caller. ``threads = 0`` writes inline.
    """

    def __init__(self, threads: int, max_pending: int = 64):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="png-writer") if threads > 0 else None
        self.max_pending = max(1, max_pending)
        self.pending: list = []

    def submit(self, image: Image.Image, path: Path, small_size: int | None = None,
               small_path: Path | None = None) -> None:
        def write() -> None:
            if small_size and small_path is not None:  # the copy first: the full image marks "done"
                save_image(image.resize((small_size, small_size), Image.BICUBIC), small_path)
            save_image(image, path)

        if self.pool is None:
            write()
            return
        self.pending.append(self.pool.submit(write))
        while len(self.pending) > self.max_pending:  # back-pressure: wait for the oldest write
            self.pending.pop(0).result()
        done = [f for f in self.pending if f.done()]
        for fut in done:
            fut.result()  # re-raise a failed write now, not at the end
        self.pending = [f for f in self.pending if f not in done]

    def close(self) -> None:
        """Wait for every write; re-raise the first failure."""
        if self.pool is None:
            return
        try:
            for fut in self.pending:
                fut.result()
        finally:
            self.pending = []
            self.pool.shutdown(wait=True, cancel_futures=True)


def small_relpath(job: "Job", size: int) -> str:
    """Where the downsampled copy of a job's image goes (``generate.sd.save_size``)."""
    return f"{IMAGES}_{size}px/{job.label}/{job.index:05d}.png"


def scratch_key(params: GenerateParams, backend: Backend, sources: Sequence[dict] | None = None) -> str:
    """12 hex digits naming the scratch folder: a hash of what determines image content (for
    image-to-image, also the variant settings and the source images)."""
    key = {"backend": backend.name, "seed": params.seed, **backend.content_key()}
    if params.mode == "img2img":
        key.update(img2img=params.img2img.model_dump(mode="json"),
                   sources=[r["sha256"] for r in sources or []])
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:12]


def make_jobs(classes: Sequence[str], model_classes: Sequence[str], per_class: int, seed: int) -> list[Job]:
    """All (class, index) jobs, class-major; seeds from :func:`synthmix.core.seeding.image_seed`."""
    ids = {c: i for i, c in enumerate(model_classes)}
    return [Job(c, ids[c], i, image_seed(seed, c, i)) for c in classes for i in range(per_class)]


def _batches(items: Sequence[Job], size: int) -> Iterable[Sequence[Job]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _wait_for(paths: list[Path], poll_s: float, timeout_s: float | None) -> None:
    """Block until every path exists (the other ranks' images)."""
    start = time.monotonic()
    last_log = start
    missing = [p for p in paths if not p.exists()]
    while missing:
        now = time.monotonic()
        if timeout_s is not None and now - start > timeout_s:
            raise DataError(
                f"{len(missing)} images of other ranks did not appear within {timeout_s:.0f} s "
                f"(first: {missing[0]}): did another rank fail?"
            )
        if now - last_log > 60:
            log.info("waiting for %d images from other ranks", len(missing))
            last_log = now
        time.sleep(poll_s)
        missing = [p for p in missing if not p.exists()]


def generate_synthetic(
    params: GenerateParams,
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: torch.device | str | None = None,
    *,
    scratch_root: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    rank: int = 0,
    world_size: int = 1,
    show_progress: bool = True,
    wait_poll_s: float = 2.0,
    wait_timeout_s: float | None = None,
    lora_dir: str | os.PathLike | None = None,
    ti_dir: str | os.PathLike | None = None,
    sources: Sequence[dict] | None = None,
    erased_dir: str | os.PathLike | None = None,
) -> dict:
    """Generate ``params.per_class`` images per class into ``out_dir`` (images/ + manifest.jsonl);
    with ``params.mode`` img2img, ``params.img2img.per_image`` variants of each real image in
    ``sources`` (manifest records) instead (see :mod:`synthmix.generators.img2img`).

    ``classes``: the classes to generate (default: all the model knows); each must be one
    of the model's classes. ``rank``/``world_size``: this process makes jobs
    ``rank, rank + world_size, ...`` of the class-major job list; rank 0 waits for the other
    ranks' files, then writes the manifest and moves the scratch folder to ``out_dir``.
    ``lora_dir`` / ``ti_dir``: the train_lora / train_textual_inversion outputs, which the SD
    backends use when generate.sd.trained_lora / textual_inversion are on.
    Returns statistics (for rank 0 after a multi-process run, generated/reused are its own).
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ParamsError(f"rank = {rank}, world_size = {world_size}: need 0 <= rank < world_size")
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    scratch_root = Path(scratch_root) if scratch_root is not None else out_dir.parent / ".partial"
    device = pick_device("auto") if device is None else torch.device(device)
    backend = open_backend(params, model_dir, device, lora_dir=lora_dir, ti_dir=ti_dir, erased_dir=erased_dir)

    wanted = list(backend.classes) if classes is None else list(classes)
    unknown = [c for c in wanted if c not in backend.classes]
    if unknown or len(set(wanted)) != len(wanted) or not wanted:
        raise DataError(
            f"classes {wanted} do not match the generator in {model_dir}, which was trained on "
            f"{backend.classes}: re-run the train_generator stage for these classes"
        )

    if params.mode == "img2img":
        from synthmix.generators.img2img import make_variant_jobs

        if not sources:
            raise DataError("generate.mode = img2img needs real source images (the real train split), got none")
        sources = [r for r in sources if r["label"] in wanted]
        p = params.img2img
        jobs = make_variant_jobs(sources, wanted, p.per_image, params.seed, p.strengths, p.probs)
        jobs = [dataclasses.replace(j, class_id=backend.classes.index(j.label)) for j in jobs]
        check_prompts = getattr(backend, "check_prompts", None)
        if p.forbid_class_names and check_prompts is not None:  # before any image is made
            check_prompts(jobs)
    else:
        jobs = make_jobs(wanted, backend.classes, params.per_class, params.seed)
    key = scratch_key(params, backend, sources)
    scratch = scratch_root / f"generate-{key}"
    scratch.mkdir(parents=True, exist_ok=True)
    mine = jobs[rank::world_size]
    size = tuple(getattr(backend, "size", None) or (backend.resolution, backend.resolution))
    small = getattr(backend, "save_size", None)

    todo: list[Job] = []
    reused = corrupt = 0
    for job in mine:
        path = scratch / job.relpath
        small_path = scratch / small_relpath(job, small) if small else None
        if image_ok(path, size, backend.mode) and (
            small_path is None or image_ok(small_path, (small, small), backend.mode)
        ):
            reused += 1
            continue
        if path.exists():
            corrupt += 1
            path.unlink()
        todo.append(job)
    if params.mode == "img2img":  # one strength per batch: a pipeline call runs one strength (pixels
        todo.sort(key=lambda j: j.strength)  # do not depend on batch-mates, so the order is free)
    log.info(
        "%s: %d images for rank %d/%d in %s: %d finished ones reused, %d to generate%s",
        backend.name, len(mine), rank, world_size, scratch, reused, len(todo),
        f" ({corrupt} unreadable leftovers removed)" if corrupt else "",
    )

    start = time.perf_counter()
    with tqdm(total=len(mine), initial=reused, desc=f"generate ({backend.name})", unit="img",
              disable=not show_progress) as bar:
        writer = ImageWriter(params.write_threads, max_pending=2 * params.batch_size)
        try:
            for batch in _batches(todo, params.batch_size):
                images = backend.generate(batch)
                for job, image in zip(batch, images):
                    writer.submit(image, scratch / job.relpath, small,
                                  scratch / small_relpath(job, small) if small else None)
                bar.update(len(batch))
        finally:
            writer.close()
    seconds = time.perf_counter() - start
    stats = {
        "backend": backend.name,
        "per_class": {c: sum(j.label == c for j in jobs) for c in wanted},
        "total": len(jobs),
        "generated": len(todo),
        "reused": reused,
        "corrupt_regenerated": corrupt,
        "seconds": round(seconds, 2),
        "images_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
        "rank": rank,
        "world_size": world_size,
        "scratch": str(scratch),
        "finalised": False,
    }
    log.info("generated %d images in %.1f s", len(todo), seconds)
    if rank != 0:
        return stats

    paths = [scratch / job.relpath for job in jobs]
    small_paths = [scratch / small_relpath(job, small) for job in jobs] if small else []
    if world_size > 1:
        _wait_for(paths + small_paths, wait_poll_s, wait_timeout_s)
    removed = prune(scratch, set(paths) | set(small_paths), [IMAGES, *(p.name for p in sorted(scratch.glob(f"{IMAGES}_*px")))])
    if removed:
        log.info("removed %d stray files (temporary files or images outside this run) from %s", removed, scratch)
    records = []
    for job, path in zip(jobs, paths):
        if small:  # training reads the small copy; the full image stays listed beside it
            rec = {"path": str(scratch / small_relpath(job, small)), "label": job.label, "source": "synthetic",
                   "sha256": file_sha256(scratch / small_relpath(job, small)),
                   "full_path": job.relpath, "full_sha256": file_sha256(path)}
        else:
            rec = {"path": str(path), "label": job.label, "source": "synthetic", "sha256": file_sha256(path)}
        rec.update(backend.record_fields(job))
        records.append(rec)
    write_manifest(scratch / MANIFEST, records)

    stats["removed_scratch"] = move_into_place(scratch, out_dir)
    log.info("wrote %d images and %s to %s", len(records), MANIFEST, out_dir)
    stats["finalised"] = True
    stats["out_dir"] = str(out_dir)
    return stats


def device_for_rank(requested: str, world_size: int) -> torch.device:
    """cuda:LOCAL_RANK for multi-process CUDA runs (torchrun), otherwise the ``device`` param's choice."""
    if world_size > 1 and requested != "cpu" and torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return pick_device(requested)


# Fields of generate_synthetic's statistics that describe the run, not the images.
RUN_FIELDS = ("generated", "reused", "corrupt_regenerated", "seconds", "images_per_s", "rank", "world_size",
              "scratch", "removed_scratch")


def generate_stage(params: Params, *, model: Input, wildcards: Input, lora: Input, textual_inversion: Input,
                   erased: Input, real: Input, out: Output, metrics: Output) -> None:
    """Stage generate: sample generate.per_class synthetic images per class with the trained generator.

    Resumable: an interrupted run leaves its finished images in data/.partial/generate-<hash>
    and the next run generates only the missing ones. Several processes can share the work
    (torchrun sets RANK and WORLD_SIZE); rank 0 writes the manifest once all images exist.
    ``wildcards`` is the folder generate.prompt.wildcards_dir names (a dep of the stage);
    ``lora`` / ``textual_inversion`` the train_lora / train_textual_inversion outputs (used by the
    SD backends with generate.sd.trained_lora / textual_inversion; deps of the stage either way, so
    retraining re-runs generate). ``real``: the real train split, the source images of
    generate.mode img2img.
    """
    from synthmix.core.atomic import write_json
    from synthmix.core.timings import split as split_timings
    from synthmix.core.timings import write_timings
    from synthmix.data.manifest import read_manifest

    if Path(params.generate.prompt.wildcards_dir) != Path(wildcards):
        raise ParamsError(f"generate.prompt.wildcards_dir = {params.generate.prompt.wildcards_dir} but the stage's "
                          f"--wildcards dep is {wildcards}: make them the same in params.yaml and dvc.yaml")
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    stats = generate_synthetic(
        params.generate, model, out, device=device_for_rank(params.device, world_size),
        rank=rank, world_size=world_size, lora_dir=lora, ti_dir=textual_inversion, erased_dir=erased,
        sources=read_manifest(real) if params.generate.mode == "img2img" else None,
    )
    if rank == 0:
        # how this run went (seconds, resume counts, ranks) differs between runs of the same
        # inputs: it goes to the undeclared timings file, not into dvc.lock's hashes
        declared, run = split_timings(stats, RUN_FIELDS)
        write_json(metrics, declared)
        write_timings(metrics, run)
        print(f"{out}: {stats['total']} images ({stats['generated']} generated, {stats['reused']} reused)")
