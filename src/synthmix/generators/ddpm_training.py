"""Training of the class-conditional DDPM (:mod:`synthmix.generators.ddpm`) on tensors.

A diffusers ``UNet2DModel`` whose class embedding table has ``n_classes + 1`` rows; the last
id (``null_class_id = n_classes``) is the "no label" token. Each training label is replaced
by it with probability ``label_dropout``, so the same network also predicts unconditional
noise. Noise is added by ``DDPMScheduler.add_noise`` (epsilon prediction); AdamW with a short
linear warm-up (``diffusers.optimization.get_scheduler("constant_with_warmup")``); an
exponential moving average of the weights (``diffusers.training_utils.EMAModel``) is what
gets saved. The train_generator stage (:func:`train_generator_stage`) loads the real split and
calls :func:`train_ddpm`; the segmentation branch trains its label DDPM through the same function.

Resume: with ``checkpoint_every`` > 0 the whole training state (weights, EMA, AdamW, lr scheduler,
grad scaler, the RNG states and the rest of the current shuffled pass) is checkpointed every that
many steps into ``models/.partial/train_generator-<key>/`` (:mod:`synthmix.core.resume`; ``key``
hashes the params, the training tensors and the device), and a re-run resumes from the newest
checkpoint: on the CPU the saved weights are byte-identical to an uninterrupted run's. The folder
is removed once the generator is written.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image

from synthmix.config import Params
from synthmix.config.ddpm import DDPMTrainingParams, unet_shape_problem
from synthmix.core.atomic import replace_dir, write_json
from synthmix.core.device import autocast_dtype as pick_autocast_dtype
from synthmix.core.device import pick_device
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.resume import Checkpoints, finish_scratch, run_key, scratch_dir
from synthmix.core.seeding import seed_everything
from synthmix.core.timings import environment, write_timings
from synthmix.data.classes import MODES, read_class_info
from synthmix.data.images import load_rgb
from synthmix.data.manifest import count_by_label, file_sha256, read_manifest
from synthmix.generators.ddpm import (
    FORMAT,
    GENERATOR_JSON,
    SAMPLER,
    ClassConditionalDDPMPipeline,
    unet_weights_file,
)

log = logging.getLogger(__name__)


def build_unet(params: DDPMTrainingParams, n_classes: int, channels: int) -> UNet2DModel:
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


CHECKPOINT_FORMAT = "synthmix-ddpm-checkpoint/1"
STAGE = "train_generator"


class _Batches:
    """Shuffled passes over range(n) (every image once per epoch), cut into batches; ``order``
    (the rest of the current pass) is part of a checkpoint."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.g = n, batch_size, generator
        self.order = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while len(self.order) < self.batch_size:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.g)])
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return idx


def train_ddpm(
    params: DDPMTrainingParams,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    mode: str,
    out_dir: str | os.PathLike,
    device: torch.device | str | None = None,
    show_progress: bool = True,
    scratch_root: str | os.PathLike | None = None,
) -> dict:
    """Train the class-conditional DDPM on ``images`` (uint8 ``(N, C, R, R)``) with int64
    ``labels`` (ids into ``classes``) and write the generator folder ``out_dir``.

    ``out_dir`` is written atomically (a temporary folder next to it, renamed at the end).
    With ``params.checkpoint_every`` > 0 training checkpoints into
    ``<scratch_root>/train_generator-<key>`` (default scratch root: ``.partial`` beside
    ``out_dir``) and resumes from there (module docstring).
    Returns the training record stored in ``out_dir/generator.json`` (only what the inputs
    determine) plus ``train_seconds``, ``images_per_s``, ``resumed_at``, ``device`` and
    ``environment`` (autocast dtype, library versions): the stage's timings file holds those.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    problem = unet_shape_problem("train_generator", params)
    if problem:
        raise ParamsError(problem)
    if len(images) == 0:
        raise DataError("no training images: the generator cannot learn from an empty set")
    classes = list(classes)
    device = pick_device("auto") if device is None else torch.device(device)
    amp_dtype = pick_autocast_dtype(device, params.mixed_precision)
    n_classes, channels = len(classes), MODES[mode]
    null_id = n_classes
    log.info(
        "training a class-conditional DDPM on %d images (%d classes, mode %s, %dx%d) on %s, autocast %s",
        len(images), n_classes, mode, params.resolution, params.resolution, device, amp_dtype,
    )

    seed_everything(params.seed)
    unet = build_unet(params, n_classes, channels).to(device)
    unet.train()
    # EMA of the weights, updated after every optimizer step. With use_ema_warmup=False and
    # update_after_step=0, EMAModel.get_decay at (0-based) training step s is
    # min(ema_decay, (1 + s) / (10 + s)) for s >= 1, and 0 at s = 0 (the EMA starts as a copy
    # of the weights after the first step). min_decay=0 adds no floor.
    ema = EMAModel(
        unet.parameters(),
        decay=params.ema_decay,
        min_decay=0.0,
        update_after_step=0,
        use_ema_warmup=False,
        foreach=True,
    )
    n_params = sum(p.numel() for p in unet.parameters())
    noise_scheduler = DDPMScheduler(
        num_train_timesteps=params.num_train_timesteps,
        beta_schedule=params.beta_schedule,
        prediction_type="epsilon",
    )
    optimizer = torch.optim.AdamW(unet.parameters(), lr=params.lr)
    warmup = min(100, params.steps // 10)
    # lr factor s / warmup at (0-based) step s < warmup (so step 0 runs at lr 0), then 1;
    # no warm-up when warmup = 0
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=warmup)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    g = torch.Generator().manual_seed(params.seed)  # all training randomness: CPU, device-independent
    batches = _Batches(len(images), params.batch_size, g)
    losses = torch.zeros(params.steps, device=device)
    model_params = [p for p in unet.parameters()]
    every = getattr(params, "checkpoint_every", 0)
    label_dropout = getattr(params, "label_dropout", 0.0)  # the label DDPM has one class and no dropout
    recorded = {**params.model_dump(exclude={"checkpoint_every", "label_dropout"}), "label_dropout": label_dropout}
    checkpoints = scratch = None
    first = 0
    if every > 0:
        key = run_key({"params": recorded, "classes": classes, "mode": mode,
                       "images": _tensor_sha256(images), "labels": _tensor_sha256(labels),
                       "device": device.type, "amp": str(amp_dtype), "torch": torch.__version__})
        scratch = scratch_dir(out_dir, STAGE, key, Path(scratch_root) if scratch_root is not None else None)
        checkpoints = Checkpoints(scratch / "checkpoints", every, STAGE, fmt=CHECKPOINT_FORMAT)
        last = checkpoints.latest()
        if last is not None:
            first, tensors, state = checkpoints.load(last, optimizer, lr_schedule, g, scaler)
            _load_training_state(tensors, state, unet, ema, batches, losses, first, last)
            log.info("resuming DDPM training at step %d of %d from %s", first, params.steps, last)
    images = images.to(device)
    labels_dev = labels.to(device)

    start = time.perf_counter()
    bar = tqdm(range(first, params.steps), desc="train DDPM", unit="step", disable=not show_progress,
               initial=first, total=params.steps)
    for step in bar:
        idx = batches.next()
        b = len(idx)
        idx_dev = idx.to(device)
        x0 = images[idx_dev].float() / 127.5 - 1.0
        drop = (torch.rand(b, generator=g) < label_dropout).to(device)
        y = torch.where(drop, torch.full_like(labels_dev[idx_dev], null_id), labels_dev[idx_dev])
        noise = torch.randn(x0.shape, generator=g).to(device)
        t = torch.randint(0, params.num_train_timesteps, (b,), generator=g).to(device)
        xt = noise_scheduler.add_noise(x0, noise, t)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) noise
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
        ema.step(model_params)
        losses[step] = loss.detach()
        if checkpoints is not None and checkpoints.due(step + 1, params.steps):
            checkpoints.save(step + 1, _training_state(unet, ema, batches, losses, step + 1), optimizer,
                             lr_schedule, g, {"ema": _ema_meta(ema)}, scaler)
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
    images_per_s = (params.steps - first) * params.batch_size / train_seconds if train_seconds > 0 else None
    log.info("trained %d steps in %.1f s, final loss %.4f", params.steps - first, train_seconds, final_loss)

    # The trained weights are not needed any more: load the EMA weights into the UNet (no
    # ema.store/restore) and write them atomically: temp folder next to out_dir, renamed at the end.
    ema.copy_to(model_params)
    unet.requires_grad_(False).eval()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    try:
        pipe = ClassConditionalDDPMPipeline(unet=unet.to("cpu"), scheduler=noise_scheduler)
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
            "train_images_per_class": count_by_label({"label": classes[i]} for i in labels.tolist()),
            "params": recorded,
            "lr_warmup_steps": warmup,
            "grad_clip_norm": 1.0,
            "weights": "EMA",
            "final_loss": round(final_loss, 6),
            "loss_history": history,
        }
        # generator.json holds only what the inputs determine; how long it took, where and with
        # which versions is the stage's metrics file's business (see train_generator_stage)
        write_json(tmp / GENERATOR_JSON, info)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote generator to %s", out_dir)
    if scratch is not None:
        finish_scratch(scratch)
    return {
        **info,
        "train_seconds": round(train_seconds, 2),
        "images_per_s": round(images_per_s, 2) if images_per_s is not None else None,
        "resumed_at": first,
        "device": str(device),
        "environment": {
            "autocast_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
            **environment(),
        },
    }


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _training_state(unet, ema: EMAModel, batches: _Batches, losses: torch.Tensor, done: int) -> dict:
    """The tensors of a checkpoint besides optimizer and RNG states (core.resume.Checkpoints adds those)."""
    state = {f"unet/{k}": v for k, v in unet.state_dict().items()}
    state.update({f"ema/{i}": p for i, p in enumerate(ema.shadow_params)})
    state["batches/order"] = batches.order
    state["losses"] = losses[:done]
    return state


def _ema_meta(ema: EMAModel) -> dict:
    """EMAModel.state_dict() without its tensors (JSON)."""
    return {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}


def _load_training_state(tensors: dict, meta: dict, unet, ema: EMAModel, batches: _Batches, losses: torch.Tensor,
                         done: int, folder: Path) -> None:
    from synthmix.core.checkpoint import load_state

    load_state(unet, tensors, folder, STAGE, prefix="unet/")
    device = next(unet.parameters()).device
    n = len(ema.shadow_params)
    ema.load_state_dict({**meta["ema"], "shadow_params": [tensors[f"ema/{i}"].to(device) for i in range(n)]})
    batches.order = tensors["batches/order"].clone()
    losses[:done] = tensors["losses"].to(losses.device)


def train_generator_stage(params: Params, *, train: Input, classes: Input, out: Output, metrics: Output) -> None:
    """Stage train_generator: train the class-conditional DDPM (the offline generator) on the
    real train split. With generate.backend sd/sdxl (pretrained weights) only the class list
    is recorded: the graph stays the same for every backend, and nothing is trained in vain."""
    backend = params.generate.backend
    info = read_class_info(classes)
    if backend != "ddpm":
        record_pretrained_generator(info["classes"], out, backend)
        write_json(metrics, {"steps": 0, "trained": False, "backend": backend})
        print(f"generate.backend = {backend}: no generator training needed ({out}/generator.json)")
        return
    p = params.train_generator
    records = read_manifest(train)
    if not records:
        raise DataError(f"{train} lists no images")
    images, labels = load_training_images(records, info["classes"], info.get("mode", "RGB"), p.resolution)
    result = train_ddpm(p, images, labels, info["classes"], info.get("mode", "RGB"), out, device=pick_device(params.device))
    write_json(metrics, {"steps": p.steps, **{k: result[k] for k in ("final_loss", "n_parameters", "train_images")}})
    # seconds, device and versions differ between runs of the same inputs: not in dvc.lock's hashes
    write_timings(metrics, {k: result[k] for k in RUN_FIELDS})
    print(f"generator: {out}, final loss {result['final_loss']:.4f}, {result['train_seconds']:.0f} s"
          + (f" (resumed at step {result['resumed_at']})" if result["resumed_at"] else ""))


# train_ddpm's fields that describe the run, not the model
RUN_FIELDS = ("train_seconds", "images_per_s", "resumed_at", "device", "environment")


def record_pretrained_generator(classes: Sequence[str], out_dir: str | os.PathLike, backend: str) -> dict:
    """The generator folder of a pretrained backend: ``generator.json`` with the classes
    (from the prepare stage) that the generate stage makes images of."""
    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    info = {"format": "synthmix-pretrained/1", "generator": backend, "classes": list(classes), "mode": "RGB",
            "trained": False, "note": f"generate.backend = {backend} uses pretrained weights (generate.sd.model)"}
    write_json(tmp / "generator.json", info)
    replace_dir(tmp, out_dir)
    return info
