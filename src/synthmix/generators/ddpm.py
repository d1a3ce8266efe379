"""A small class-conditional DDPM with classifier-free guidance: the offline generator backend.

Training lives in :mod:`synthmix.generators.ddpm_training`; this module holds the sampling
pipeline, the model folder it is saved in, and the ``ddpm`` backend of the generate stage.

Sampling (:class:`ClassConditionalDDPMPipeline`): DPM-Solver++ (2M) with "trailing"
timesteps and x0 predictions clipped to [-1, 1]; classifier-free guidance ``eps = eps_uncond + g * (eps_cond - eps_uncond)``
with the conditional and unconditional halves in one batched forward pass. Each image's
starting noise comes from its own CPU ``torch.Generator`` seeded with the image's seed, so
an image depends only on (class, seed, steps, guidance), not on its batch-mates.

The model folder is an ordinary diffusers pipeline folder (``model_index.json``,
``unet/``, ``scheduler/``) plus ``generator.json`` (classes, mode, training record)::

    pipe = ClassConditionalDDPMPipeline.from_pretrained("models/generator")
    images = pipe(class_ids=[0, 1], seeds=[1, 2], num_inference_steps=20, guidance_scale=2.0)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import (
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)
from PIL import Image

from synthmix.core.device import autocast_dtype
from synthmix.core.errors import MissingAssetError
from synthmix.data.classes import MODES
from synthmix.data.manifest import file_sha256
from synthmix.generators.base import Job
from synthmix.generators.img2img import group_by_strength, load_source, variant_fields

if TYPE_CHECKING:
    from synthmix.config.sections.generate import GenerateParams

log = logging.getLogger(__name__)

GENERATOR_JSON = "generator.json"
FORMAT = "synthmix-ddpm/1"
# How sampling is done; recorded in generator.json and in every synthetic manifest record.
SAMPLER = (
    "DPMSolverMultistepScheduler(algorithm_type=dpmsolver++, solver_order=2, timestep_spacing=trailing, "
    "thresholding=True, sample_max_value=1.0, lambda_min_clipped=-5.1)"
)



# --------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------


def sampling_scheduler(config: Any) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M) built from the training (DDPM) scheduler's config."""
    return DPMSolverMultistepScheduler.from_config(
        config,
        algorithm_type="dpmsolver++",
        solver_order=2,
        timestep_spacing="trailing",
        # pixel-space model: clip each x0 prediction to the data range [-1, 1]
        thresholding=True,
        sample_max_value=1.0,
        # skip the last few cosine-schedule timesteps where alpha is ~0 and the x0 prediction
        # explodes (the value diffusers recommends for squaredcos_cap_v2; no effect on linear)
        lambda_min_clipped=-5.1,
    )


def initial_noise(seeds: Sequence[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """One noise tensor per seed, each from its own CPU generator (device-independent)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


class ClassConditionalDDPMPipeline(DiffusionPipeline):
    """Class-conditional DDPM sampler with classifier-free guidance.

    ``unet`` is a ``UNet2DModel`` with ``num_class_embeds = n_classes + 1`` (the last id is
    the null label); ``scheduler`` is the training ``DDPMScheduler`` (its config defines the
    noise schedule; sampling uses DPM-Solver++ built from it).
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @property
    def null_class_id(self) -> int:
        return int(self.unet.config.num_class_embeds) - 1

    @property
    def num_classes(self) -> int:
        return self.null_class_id

    @torch.no_grad()
    def __call__(
        self,
        class_ids: Sequence[int],
        seeds: Sequence[int],
        num_inference_steps: int = 20,
        guidance_scale: float = 2.0,
        autocast_dtype: torch.dtype | None = None,
        output_type: str = "np",
        rows_per_forward: int | None = None,
        image: torch.Tensor | None = None,
        strength: float = 1.0,
    ) -> np.ndarray | list[Image.Image]:
        """Sample one image per (class id, seed); with ``image``, edit it (SDEdit).

        Returns uint8 images, ``(B, H, W, C)`` for ``output_type="np"`` or a list of PIL
        images ("L" for one channel, "RGB" for three) for ``output_type="pil"``.
        ``guidance_scale`` 1.0 is purely conditional (one forward per step), 0.0 purely
        unconditional.

        ``rows_per_forward``: the UNet always runs on exactly this many rows (conditional and
        unconditional rows of all images, cut into chunks; the last chunk padded). Matrix
        kernels pick different code paths for different batch sizes (measured on CPU: a
        Linear layer differs at batch 1..7 vs 8, a convolution at batch 1 vs 2, by ~1e-6),
        so a fixed forward shape is what makes an image independent of how many images are
        sampled together. Batch-mates' values never matter. Default:
        :func:`default_rows_per_forward`.

        ``image`` (``(B, C, H, W)`` floats in [-1, 1], one per seed) and ``strength`` in [0, 1]:
        image-to-image as in diffusers' img2img pipelines (SDEdit, Meng et al. 2022): the image
        is noised with the scheduler to the timestep ``strength`` of the way up the schedule and
        only the last ``int(num_inference_steps * strength)`` steps are run. Strength 0 returns
        the image; strength 1 starts from pure noise and ignores it (diffusers' inpainting
        convention), so it equals sampling without an image.
        """
        class_ids = [int(c) for c in class_ids]
        seeds = [int(s) for s in seeds]
        if len(class_ids) != len(seeds):
            raise ValueError(f"{len(class_ids)} class ids but {len(seeds)} seeds")
        if not class_ids:
            return np.zeros((0, 0, 0, 0), np.uint8) if output_type == "np" else []
        bad = [c for c in class_ids if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"class ids {sorted(set(bad))} outside 0..{self.num_classes - 1}")
        device = self._execution_device
        unet = self.unet
        res = unet.config.sample_size
        res = (res, res) if isinstance(res, int) else tuple(res)
        shape = (unet.config.in_channels, *res)

        scheduler = sampling_scheduler(self.scheduler.config)
        scheduler.set_timesteps(num_inference_steps, device=device)
        noise = initial_noise(seeds, shape).to(device)
        timesteps = scheduler.timesteps
        if image is None or strength >= 1.0:
            x = noise * scheduler.init_noise_sigma
        else:
            if not 0.0 <= strength <= 1.0:
                raise ValueError(f"strength {strength} outside [0, 1]")
            if tuple(image.shape) != (len(seeds), *shape):
                raise ValueError(f"image batch of shape {tuple(image.shape)}, expected {(len(seeds), *shape)}")
            # diffusers' img2img get_timesteps: the last int(steps * strength) steps
            t_start = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
            timesteps = scheduler.timesteps[t_start * scheduler.order :]
            scheduler.set_begin_index(t_start * scheduler.order)
            x = image.to(device=device, dtype=noise.dtype)
            if len(timesteps):
                x = scheduler.add_noise(x, noise, timesteps[:1].repeat(len(seeds)))
        n = len(class_ids)
        cond = torch.tensor(class_ids, device=device)
        use_uncond = guidance_scale != 1.0
        if use_uncond:
            labels = torch.cat([cond, torch.full_like(cond, self.null_class_id)])
        else:
            labels = cond
        use_amp = autocast_dtype is not None and device.type != "cpu"
        rows = rows_per_forward or default_rows_per_forward(device)
        for t in timesteps:
            inp = torch.cat([x, x]) if use_uncond else x
            inp = scheduler.scale_model_input(inp, t)
            eps = self._predict_noise(inp, t, labels, rows, autocast_dtype if use_amp else None)
            if use_uncond:
                eps_cond, eps_uncond = eps[:n], eps[n:]
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            x = scheduler.step(eps, t, x).prev_sample
        images = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        images = images.permute(0, 2, 3, 1).cpu().numpy()
        if output_type == "pil":
            return [array_to_pil(a) for a in images]
        return images

    def _predict_noise(
        self, sample: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, rows: int, amp: torch.dtype | None
    ) -> torch.Tensor:
        """UNet noise prediction in fixed-size chunks of ``rows`` (the last one padded)."""
        device = sample.device
        outs = []
        for i in range(0, sample.shape[0], rows):
            chunk, chunk_labels = sample[i : i + rows], labels[i : i + rows]
            real = chunk.shape[0]
            if real < rows:  # pad with copies of the last row; padded outputs are dropped
                pad = rows - real
                chunk = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])])
                chunk_labels = torch.cat([chunk_labels, chunk_labels[-1:].expand(pad)])
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                eps = self.unet(chunk, t, class_labels=chunk_labels).sample
            outs.append(eps[:real].float())
        return torch.cat(outs)


def default_rows_per_forward(device: torch.device) -> int:
    """UNet rows per forward pass: 64 on CPU (measured fastest on 2 cores), 256 on GPUs.

    Part of what determines the pixels (see ``ClassConditionalDDPMPipeline.__call__``),
    so it is recorded in the generate stage's scratch hash.
    """
    return 64 if torch.device(device).type == "cpu" else 256


def array_to_pil(array: np.ndarray) -> Image.Image:
    """A ``(H, W, C)`` uint8 array as a PIL image: "L" for C = 1, "RGB" for C = 3."""
    if array.ndim == 3 and array.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(array[:, :, 0]), mode="L")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


# --------------------------------------------------------------------------------------
# Model folder
# --------------------------------------------------------------------------------------


def unet_weights_file(model_dir: str | os.PathLike) -> Path:
    """The UNet weights file of a generator folder: safetensors only (a pickled ``.bin`` is never
    loaded, see :mod:`synthmix.core.checkpoint`)."""
    path = Path(model_dir) / "unet" / "diffusion_pytorch_model.safetensors"
    if path.is_file():
        return path
    raise MissingAssetError(
        f"{path.parent} holds no diffusion_pytorch_model.safetensors: {model_dir} is not a complete "
        "generator folder; re-run the stage that writes it: dvc repro -f train_generator"
    )


def read_generator_info(model_dir: str | os.PathLike) -> dict:
    """Validate a generator folder and return its generator.json."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise MissingAssetError(
            f"generator folder {model_dir} does not exist: train it first with the train_generator "
            "stage (dvc repro train_generator), or pass the folder it wrote"
        )
    missing = [n for n in ("model_index.json", GENERATOR_JSON, "unet/config.json", "scheduler/scheduler_config.json")
               if not (model_dir / n).is_file()]
    if missing:
        raise MissingAssetError(
            f"{model_dir} is not a generator folder written by the train_generator stage (missing "
            f"{', '.join(missing)}): re-run it with dvc repro train_generator"
        )
    unet_weights_file(model_dir)
    try:
        info = json.loads((model_dir / GENERATOR_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MissingAssetError(f"{model_dir / GENERATOR_JSON} is unreadable ({exc}): re-run train_generator") from exc
    if info.get("format") != FORMAT or not info.get("classes") or info.get("mode") not in MODES:
        raise MissingAssetError(
            f"{model_dir / GENERATOR_JSON} is not a {FORMAT} description (format={info.get('format')!r}): "
            "re-run the train_generator stage"
        )
    return info


def load_generator(
    model_dir: str | os.PathLike, device: torch.device | str | None = None
) -> tuple[ClassConditionalDDPMPipeline, dict]:
    """Load a trained generator folder: (pipeline on ``device``, generator.json contents)."""
    info = read_generator_info(model_dir)
    from safetensors import SafetensorError

    try:  # safetensors only: diffusers reports a file that is not one as OSError, never unpickles it
        pipe = ClassConditionalDDPMPipeline.from_pretrained(str(model_dir), use_safetensors=True)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise MissingAssetError(
            f"cannot load the generator in {model_dir} ({exc}): re-run the stage that writes it: "
            "dvc repro -f train_generator"
        ) from exc
    n_classes, channels = len(info["classes"]), MODES[info["mode"]]
    if pipe.num_classes != n_classes or pipe.unet.config.in_channels != channels:
        raise MissingAssetError(
            f"{model_dir}: the UNet ({pipe.num_classes} classes, {pipe.unet.config.in_channels} channels) does "
            f"not match generator.json ({n_classes} classes, mode {info['mode']}): re-run train_generator"
        )
    pipe.set_progress_bar_config(disable=True)
    if device is not None:
        pipe.to(torch.device(device))
    pipe.unet.eval()
    return pipe, info


# --------------------------------------------------------------------------------------
# The generate stage's backend
# --------------------------------------------------------------------------------------


class DDPMBackend:
    """The class-conditional DDPM trained by the train_generator stage."""

    name = "ddpm"

    def __init__(self, params: GenerateParams, model_dir: Path, device: torch.device):
        info = read_generator_info(model_dir)  # MissingAssetError naming train_generator
        self.params, self.model_dir, self.device = params, model_dir, device
        self.classes, self.mode, self.resolution = list(info["classes"]), info["mode"], int(info["resolution"])
        self.sampler = SAMPLER
        self.model_sha256 = file_sha256(unet_weights_file(model_dir))
        self.pipe, _ = load_generator(model_dir, device)
        self.amp_dtype = autocast_dtype(device)
        self.rows_per_forward = default_rows_per_forward(device)

    def content_key(self) -> dict:
        return {
            "model_sha256": self.model_sha256,
            "sampler": self.sampler,
            "steps": self.params.steps,
            "guidance_scale": float(self.params.guidance_scale),
            # bf16/fp16 autocast changes pixels a little: keep CPU and GPU runs apart
            "dtype": str(self.amp_dtype) if self.amp_dtype else "float32",
            # the UNet's forward shape changes float rounding (see the pipeline's __call__)
            "rows_per_forward": self.rows_per_forward,
        }

    def record_fields(self, job: Job) -> dict:
        return {
            "generator": "ddpm",
            "model": str(self.model_dir),
            "model_sha256": self.model_sha256,
            "seed": job.seed,
            "index": job.index,
            "steps": self.params.steps,
            "guidance_scale": float(self.params.guidance_scale),
            "scheduler": self.sampler,
            "resolution": self.resolution,
            **({"img2img": "sdedit", **variant_fields(job)} if job.is_img2img else {}),
        }

    def generate(self, jobs: Sequence[Job]) -> list[Image.Image]:
        """One image per job; image-to-image jobs (SDEdit) one pipeline call per strength."""
        out: list[Image.Image | None] = [None] * len(jobs)
        for strength, idx in group_by_strength(jobs).items():
            part = [jobs[i] for i in idx]
            image = None
            if strength is not None:
                size = (self.resolution, self.resolution)
                arrays = [np.asarray(load_source(j, size, self.mode), dtype=np.float32) for j in part]
                image = torch.from_numpy(np.stack(arrays)).reshape(len(part), size[1], size[0], -1)
                image = image.permute(0, 3, 1, 2) / 127.5 - 1.0
            images = self.pipe(
                class_ids=[j.class_id for j in part],
                seeds=[j.seed for j in part],
                num_inference_steps=self.params.steps,
                guidance_scale=self.params.guidance_scale,
                autocast_dtype=self.amp_dtype,
                output_type="pil",
                rows_per_forward=self.rows_per_forward,
                image=image,
                strength=1.0 if strength is None else strength,
            )
            for i, im in zip(idx, images):
                out[i] = im
        return out  # type: ignore[return-value]
