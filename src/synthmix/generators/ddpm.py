"""A small class-conditional DDPM with classifier-free guidance, trained on the real split.

Training (:func:`train_ddpm`): a diffusers ``UNet2DModel`` whose class embedding table has
``n_classes + 1`` rows; the last id (``null_class_id = n_classes``) is the "no label" token.
Each training label is replaced by it with probability ``label_dropout``, so the same
network also predicts unconditional noise. Noise is added by a ``DDPMScheduler``
(epsilon prediction); AdamW with a short linear warm-up; an exponential moving average
(EMA) of the weights is what gets saved.

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

import contextlib
import copy
import itertools
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)
from PIL import Image

from ..atomic import write_json
from ..device import autocast_dtype as pick_autocast_dtype
from ..device import pick_device
from ..errors import DataError, MissingAssetError, ParamsError
from ..images import load_rgb
from ..manifest import count_by_label, file_sha256, read_manifest
from ..params import TrainGeneratorParams
from ..seeding import seed_everything

log = logging.getLogger(__name__)

GENERATOR_JSON = "generator.json"
FORMAT = "synthmix-ddpm/1"
MODES = {"L": 1, "RGB": 3}
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
    ) -> np.ndarray | list[Image.Image]:
        """Sample one image per (class id, seed).

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
        x = initial_noise(seeds, shape).to(device) * scheduler.init_noise_sigma
        n = len(class_ids)
        cond = torch.tensor(class_ids, device=device)
        use_uncond = guidance_scale != 1.0
        if use_uncond:
            labels = torch.cat([cond, torch.full_like(cond, self.null_class_id)])
        else:
            labels = cond
        use_amp = autocast_dtype is not None and device.type != "cpu"
        rows = rows_per_forward or default_rows_per_forward(device)
        for t in scheduler.timesteps:
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
    """The UNet weights file of a generator folder (safetensors, or a legacy .bin)."""
    unet_dir = Path(model_dir) / "unet"
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (unet_dir / name).is_file():
            return unet_dir / name
    raise MissingAssetError(
        f"{unet_dir} holds no diffusion_pytorch_model.safetensors: {model_dir} is not a complete "
        "generator folder; re-run the train_generator stage (dvc repro train_generator)"
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
    try:
        pipe = ClassConditionalDDPMPipeline.from_pretrained(str(model_dir))
    except (OSError, ValueError, RuntimeError) as exc:
        raise MissingAssetError(
            f"cannot load the generator in {model_dir} ({exc}): re-run the train_generator stage"
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


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished directory ``src`` to ``dst``, replacing any existing ``dst``.

    The old ``dst`` is renamed aside first, so ``dst`` is always either the complete old
    directory, absent (between two renames) or the complete new one.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    trash = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if trash.exists():
        shutil.rmtree(trash)
    moved_old = False
    if dst.exists() or dst.is_symlink():
        os.replace(dst, trash)
        moved_old = True
    try:
        try:
            os.replace(src, dst)
        except OSError:  # another filesystem: copy, then remove the source
            shutil.move(str(src), str(dst))
    except BaseException:
        if moved_old and not dst.exists():
            with contextlib.suppress(OSError):
                os.replace(trash, dst)
        raise
    if moved_old:
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                trash.unlink()


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def read_classes(classes_json: str | os.PathLike) -> tuple[list[str], str]:
    """(class names in label order, image mode) from data/real/classes.json."""
    path = Path(classes_json)
    if not path.is_file():
        raise DataError(f"{path} does not exist: run the prepare stage first (dvc repro prepare)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg})") from exc
    classes, mode = info.get("classes"), info.get("mode", "RGB")
    if not isinstance(classes, list) or len(classes) < 1 or len(set(classes)) != len(classes):
        raise DataError(f"{path}: 'classes' must be a non-empty list of unique names, got {classes!r}")
    if mode not in MODES:
        raise DataError(f"{path}: mode must be one of {sorted(MODES)}, got {mode!r}")
    return [str(c) for c in classes], mode


def check_architecture(params: TrainGeneratorParams) -> None:
    """The UNet constraints (also checked by params.py for a whole params.yaml)."""
    boc = params.block_out_channels
    if any(c % 8 for c in boc):
        raise ParamsError(
            f"train_generator.block_out_channels = {boc}: each entry must be a multiple of 8 "
            "(GroupNorm uses 8 groups)"
        )
    down = 2 ** (len(boc) - 1)
    if params.resolution % down:
        raise ParamsError(
            f"train_generator.resolution = {params.resolution} must be divisible by {down} "
            "(2 ** (number of blocks - 1))"
        )


def build_unet(params: TrainGeneratorParams, n_classes: int, channels: int) -> UNet2DModel:
    n = len(params.block_out_channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if params.attention:  # self-attention only at the lowest resolution (cheap there)
        down[-1] = "AttnDownBlock2D"
        up[0] = "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=params.resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(params.block_out_channels),
        layers_per_block=params.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=8,
        attention_head_dim=8,
        add_attention=params.attention,  # the middle block's attention follows the same switch
        num_class_embeds=n_classes + 1,  # + the null label of classifier-free guidance
    )


def load_training_images(
    records: list[dict], classes: list[str], mode: str, resolution: int, show_progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """All training images as one uint8 tensor ``(N, C, R, R)`` plus int64 labels."""
    from tqdm.auto import tqdm

    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({r["label"] for r in records} - set(index))
    if unknown:
        raise DataError(f"the train manifest has labels {unknown} that are not in classes.json {classes}")
    counts = count_by_label(records)
    empty = [c for c in classes if not counts.get(c)]
    if empty:
        raise DataError(f"no training images for classes {empty}: the generator cannot learn them")
    arrays, labels = [], []
    for rec in tqdm(records, desc="load train images", unit="img", disable=not show_progress, leave=False):
        im = load_rgb(rec["path"])
        if mode == "L":
            im = im.convert("L")
        if im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.BICUBIC)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[:, :, None] if a.ndim == 2 else a)
        labels.append(index[rec["label"]])
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.long)


class _Batches:
    """Shuffled passes over range(n) (every image once per epoch), cut into batches."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.g = n, batch_size, generator
        self.order = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while len(self.order) < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.g)])
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return idx


def _ema_decay(step: int, decay: float) -> float:
    """EMA decay with the usual warm-up (1 + s) / (10 + s), capped at ``decay``."""
    return min(decay, (1 + step) / (10 + step))


def train_ddpm(
    params: TrainGeneratorParams,
    train_manifest: str | os.PathLike,
    classes_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: torch.device | str | None = None,
    show_progress: bool = True,
) -> dict:
    """Train the class-conditional DDPM and write the generator folder ``out_dir``.

    ``out_dir`` is written atomically (a temporary folder next to it, renamed at the end).
    Returns the training record that is also stored in ``out_dir/generator.json``.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    check_architecture(params)
    classes, mode = read_classes(classes_json)
    records = read_manifest(train_manifest)
    if not records:
        raise DataError(f"{train_manifest} lists no images")
    device = pick_device("auto") if device is None else torch.device(device)
    amp_dtype = pick_autocast_dtype(device, params.mixed_precision)

    images, labels = load_training_images(records, classes, mode, params.resolution, show_progress)
    n_classes, channels = len(classes), MODES[mode]
    null_id = n_classes
    log.info(
        "training a class-conditional DDPM on %d images (%d classes, mode %s, %dx%d) on %s, autocast %s",
        len(images), n_classes, mode, params.resolution, params.resolution, device, amp_dtype,
    )

    seed_everything(params.seed)
    unet = build_unet(params, n_classes, channels).to(device)
    ema = copy.deepcopy(unet).requires_grad_(False).eval()
    unet.train()
    n_params = sum(p.numel() for p in unet.parameters())
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=params.num_train_timesteps,
        beta_schedule=params.beta_schedule,
        prediction_type="epsilon",
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=params.lr)
    warmup = min(100, params.steps // 10)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(device)

    g = torch.Generator().manual_seed(params.seed)  # all training randomness: CPU, device-independent
    batches = _Batches(len(images), params.batch_size, g)
    images = images.to(device)
    labels_dev = labels.to(device)
    losses = torch.zeros(params.steps, device=device)
    ema_params = [p for p in ema.parameters()]
    model_params = [p for p in unet.parameters()]

    start = time.perf_counter()
    bar = tqdm(range(params.steps), desc="train DDPM", unit="step", disable=not show_progress)
    for step in bar:
        idx = batches.next()
        b = len(idx)
        idx_dev = idx.to(device)
        x0 = images[idx_dev].float() / 127.5 - 1.0
        drop = (torch.rand(b, generator=g) < params.label_dropout).to(device)
        y = torch.where(drop, torch.full_like(labels_dev[idx_dev], null_id), labels_dev[idx_dev])
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(0, params.num_train_timesteps, (b,), generator=g).to(device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise  # = DDPMScheduler.add_noise
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            pred = unet(xt, t, class_labels=y).sample
        loss = F.mse_loss(pred.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model_params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        lr_schedule.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in model_params], 1.0 - _ema_decay(step, params.ema_decay))
        losses[step] = loss.detach()
        if step % 25 == 24 or step == params.steps - 1:
            lo = max(0, step - 99)
            bar.set_postfix(loss=f"{losses[lo : step + 1].mean().item():.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - start
    bar.close()

    losses = losses.cpu()
    if not torch.isfinite(losses).all():
        bad = int((~torch.isfinite(losses)).nonzero()[0])
        raise DataError(f"DDPM training diverged (loss not finite from step {bad}): lower train_generator.lr")
    window = min(100, params.steps)
    final_loss = float(losses[-window:].mean())
    n_points = min(20, params.steps)
    edges = np.linspace(0, params.steps, n_points + 1).round().astype(int)
    history = [
        {"step": int(hi), "loss": round(float(losses[lo:hi].mean()), 6)}
        for lo, hi in itertools.pairwise(edges)
        if hi > lo
    ]
    images_per_s = params.steps * params.batch_size / train_seconds
    log.info("trained %d steps in %.1f s (%.1f images/s), final loss %.4f", params.steps, train_seconds, images_per_s, final_loss)

    # Write the EMA weights atomically: temp folder next to out_dir, renamed at the end.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    try:
        pipe = ClassConditionalDDPMPipeline(unet=ema.to("cpu"), scheduler=noise_scheduler)
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        info = {
            "format": FORMAT,
            "generator": "ddpm",
            "classes": classes,
            "mode": mode,
            "channels": channels,
            "null_class_id": null_id,
            "resolution": params.resolution,
            "sampler": SAMPLER,
            "unet_sha256": file_sha256(unet_weights_file(tmp)),
            "n_parameters": n_params,
            "train_images": len(images),
            "train_images_per_class": count_by_label(records),
            "params": params.model_dump(),
            "lr_warmup_steps": warmup,
            "grad_clip_norm": 1.0,
            "weights": "EMA",
            "final_loss": round(final_loss, 6),
            "loss_history": history,
            "train_seconds": round(train_seconds, 2),
            "images_per_s": round(images_per_s, 2),
            "device": str(device),
            "autocast_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
            "torch": torch.__version__,
            "diffusers": _diffusers_version(),
            "python": platform.python_version(),
        }
        write_json(tmp / GENERATOR_JSON, info)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote generator to %s", out_dir)
    return info


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


__all__ = [
    "FORMAT",
    "GENERATOR_JSON",
    "SAMPLER",
    "ClassConditionalDDPMPipeline",
    "array_to_pil",
    "build_unet",
    "default_rows_per_forward",
    "initial_noise",
    "load_generator",
    "load_training_images",
    "read_classes",
    "read_generator_info",
    "replace_dir",
    "sampling_scheduler",
    "train_ddpm",
    "unet_weights_file",
]
