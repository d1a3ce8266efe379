"""What the LoRA and textual-inversion trainers share: the model, the loss, the loop, resuming.

- **Model**: ``generate.sd.model`` loaded through the SD backend's own code
  (:func:`synthmix.generators.stable_diffusion.load_pipeline`), so every form it accepts (hub
  id, diffusers folder, single file + config) trains too. The noise scheduler is diffusers'
  ``DDPMScheduler`` from the model's scheduler config; its ``prediction_type`` (epsilon, or
  v_prediction for SD 2.x 768) picks the target, as diffusers' training examples do.
- **Loss**: diffusers' noise-prediction loss: latents (VAE posterior sample x scaling factor),
  noise, uniform timesteps, ``add_noise``, MSE of the UNet's prediction against the noise or
  the velocity. SDXL adds its pooled text embedding and size/crop ids (the training resolution,
  no crop: what generation asks for at that size).
- **Speed**: the VAE posterior (mean, std) of every training image, and of its mirror image
  when flips are on, is computed once; each step samples from it with the run's generator
  (what ``latent_dist.sample()`` does, without re-encoding every step). Frozen text
  conditionings are encoded once per distinct caption.
- **Mixed precision** (CUDA): frozen weights in bf16/fp16, trainable weights in fp32, autocast
  around the forward pass (diffusers' examples); the CPU trains in fp32.
- **Determinism and resume**: every random draw comes from one CPU ``torch.Generator`` per
  run (noise, timesteps, latent samples, flips, templates); the image order of epoch e is a
  permutation seeded by (seed, run, e). A checkpoint (every ``checkpoint_every`` steps, in a
  scratch folder keyed by a hash of everything that determines the result) holds the trainable
  tensors, the optimizer state, the lr scheduler state, the generator and torch RNG states and
  the step, as safetensors + JSON; a re-run resumes from the newest and ends with the same
  weights as an uninterrupted run (on the CPU bit for bit).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from synthmix.core.atomic import write_json
from synthmix.core.device import autocast_dtype
from synthmix.core.errors import DataError, ParamsError

# the checkpoints and scratch folders of resumable stages (the DDPM trainer uses them too)
from synthmix.core.resume import Checkpoints, finish_scratch, run_key, scratch_dir  # noqa: F401
from synthmix.core.seeding import derive_seed

log = logging.getLogger(__name__)

StepHook = Callable[[str, int], None]  # (run name, optimiser steps done): tests interrupt runs with it


# ------------------------------------------------------------------------------------------ model
@dataclass
class SDModel:
    """A Stable Diffusion pipeline prepared for adapter training."""

    pipe: object
    family: str  # sd | sdxl
    model: str
    model_sha256: str
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype (CUDA mixed precision) or None
    resolution: int
    noise_scheduler: object = field(repr=False)

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.amp_dtype or torch.float32

    @property
    def tokenizers(self) -> list:
        p = self.pipe
        return [p.tokenizer] if self.family == "sd" else [p.tokenizer, p.tokenizer_2]

    @property
    def text_encoders(self) -> list:
        p = self.pipe
        return [p.text_encoder] if self.family == "sd" else [p.text_encoder, p.text_encoder_2]

    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type


def training_resolution(params, resolution: int | None) -> int:
    """The section's resolution, or the family's native size (512 sd, 1024 sdxl)."""
    from synthmix.generators.stable_diffusion import DEFAULT_SIZE

    family = params.generate.backend
    if family not in DEFAULT_SIZE:
        raise ParamsError(f"generate.backend = {family}: adapters train only for sd / sdxl")
    return resolution or DEFAULT_SIZE[family]


def load_sd_model(params, device: torch.device, resolution: int | None, mixed_precision: str,
                  pipe=None) -> SDModel:
    """``generate.sd.model`` (backend ``generate.backend``) in fp32, frozen, on ``device``.

    ``pipe``: an already built pipeline (benchmarks, tests) instead of loading the weights.
    """
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from synthmix.generators.stable_diffusion import load_pipeline, model_kind, weights_sha256

    family, sd = params.generate.backend, params.generate.sd
    res = training_resolution(params, resolution)
    if pipe is None:
        kind = model_kind(sd.model, sd.model_kind)
        sha = weights_sha256(sd.model, kind) if kind != "hub" else None
        if family == "sd":
            pipe = load_pipeline(StableDiffusionPipeline, sd.model, kind, torch.float32, sd.config,
                                 safety_checker=None, requires_safety_checker=False)
        else:
            pipe = load_pipeline(StableDiffusionXLPipeline, sd.model, kind, torch.float32, sd.config)
        sha = sha or weights_sha256(sd.model, "hub")
        name = sd.model
    else:
        sha, name = "given:" + type(pipe).__name__, "given"
    amp = autocast_dtype(device, mixed_precision)
    for module in [pipe.unet, pipe.vae, *([pipe.text_encoder] if family == "sd" else
                                           [pipe.text_encoder, pipe.text_encoder_2])]:
        module.requires_grad_(False)
        module.eval()
    pipe.unet.to(device, dtype=amp or torch.float32)
    pipe.vae.to(device, dtype=torch.float32)  # encodes each image once, in fp32 (SDXL's VAE overflows in fp16)
    pipe.set_progress_bar_config(disable=True)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return SDModel(pipe, family, name, sha, device, amp, res, noise_scheduler)


# ------------------------------------------------------------------------------------------ text
def tokenize(model: SDModel, texts: Sequence[str]) -> list[torch.Tensor]:
    """Token ids per tokenizer, padded to the model length (77) and truncated."""
    return [tok(list(texts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                return_tensors="pt").input_ids for tok in model.tokenizers]


def encode_text(model: SDModel, ids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(encoder hidden states, pooled embedding or None) the way generation conditions the UNet:
    SD 1.x/2.x the last hidden state; SDXL both encoders' penultimate hidden states side by
    side and the second encoder's projected pooled output."""
    dev = model.device
    if model.family == "sd":
        return model.pipe.text_encoder(ids[0].to(dev))[0], None
    hidden, pooled = [], None
    for encoder, x in zip(model.text_encoders, ids):
        out = encoder(x.to(dev), output_hidden_states=True)
        hidden.append(out.hidden_states[-2])
        pooled = out[0]
    return torch.cat(hidden, dim=-1), pooled


# ------------------------------------------------------------------------------------------ latents
@torch.no_grad()
def latent_posteriors(model: SDModel, pixels: torch.Tensor, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the VAE posterior of each image (CPU fp32): sampled each step."""
    vae = model.pipe.vae
    means, stds = [], []
    for i in range(0, len(pixels), batch):
        dist = vae.encode(pixels[i : i + batch].to(model.device, torch.float32)).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


def sample_latents(model: SDModel, mean: torch.Tensor, std: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    z = mean + std * torch.randn(mean.shape, generator=g)
    return z * model.pipe.vae.config.scaling_factor


def noise_loss(model: SDModel, latents: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor | None,
               g: torch.Generator) -> torch.Tensor:
    """diffusers' noise-prediction MSE for one batch (``latents`` on the CPU, scaled)."""
    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(0, model.noise_scheduler.config.num_train_timesteps, (b,), generator=g)
    dev, wd = model.device, model.weight_dtype
    latents, noise, t = latents.to(dev), noise.to(dev), t.to(dev)
    noisy = model.noise_scheduler.add_noise(latents, noise, t)
    if model.prediction_type == "epsilon":
        target = noise
    elif model.prediction_type == "v_prediction":
        target = model.noise_scheduler.get_velocity(latents, noise, t)
    else:
        raise ParamsError(f"the model's scheduler predicts {model.prediction_type!r}: only epsilon and "
                          "v_prediction train")
    kwargs = {}
    if model.family == "sdxl":
        r = model.resolution
        time_ids = torch.tensor([[r, r, 0, 0, r, r]], device=dev, dtype=wd).repeat(b, 1)
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled.to(dev, wd), "time_ids": time_ids}
    with torch.autocast(dev.type, dtype=model.amp_dtype, enabled=model.amp_dtype is not None):
        pred = model.pipe.unet(noisy.to(wd), t, hidden.to(dev, wd), **kwargs).sample
    return F.mse_loss(pred.float(), target.float())


# ------------------------------------------------------------------------------------------ order
@lru_cache(maxsize=64)
def epoch_order(n: int, seed: int, run: str, epoch: int) -> tuple[int, ...]:
    """The image order of one epoch: a permutation that depends only on (seed, run, epoch)."""
    g = torch.Generator().manual_seed(derive_seed("order", seed, run, epoch))
    return tuple(torch.randperm(n, generator=g).tolist())


def stream_batch(n: int, batch: int, index: int, seed: int, run: str) -> list[int]:
    """Batch ``index`` of an endless stream of epoch permutations (every batch full)."""
    out = []
    for i in range(index * batch, (index + 1) * batch):
        out.append(epoch_order(n, seed, run, i // n)[i % n])
    return out


# ------------------------------------------------------------------------------------------ optimiser
def make_optimizer(name: str, params: Sequence[torch.nn.Parameter], lr: float, weight_decay: float, key: str):
    """AdamW, Adafactor with a fixed lr (kohya's 'Adafactor' with relative_step off), or bitsandbytes' AdamW8bit."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, relative_step=False, scale_parameter=False, warmup_init=False,
                         weight_decay=weight_decay)
    if name == "adamw8bit":
        bnb = require_bitsandbytes(key)
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    raise ParamsError(f"{key}.optimizer = {name!r}: allowed: adafactor, adamw, adamw8bit")


def require_bitsandbytes(key: str):
    try:
        import bitsandbytes
    except Exception as exc:  # noqa: BLE001 -- not installed, or no CUDA build
        raise ParamsError(f"{key}.optimizer = adamw8bit needs the bitsandbytes package, which cannot be imported "
                          f"here ({type(exc).__name__}: {exc}): pip install bitsandbytes (CUDA), or use adamw / "
                          "adafactor") from None
    return bitsandbytes


def make_lr_scheduler(name: str, optimizer, warmup: int, total: int):
    from diffusers.optimization import get_scheduler

    return get_scheduler(name, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total)


# ------------------------------------------------------------------------------------------ the loop
@dataclass
class Run:
    """One adapter's training run: what the loop needs from the LoRA / TI trainer."""

    name: str  # a class, or "shared"
    steps: int  # optimiser steps
    params: list[torch.nn.Parameter]
    micro_loss: Callable[[int, int, torch.Generator], torch.Tensor]  # (step, micro-batch, generator) -> loss
    state: Callable[[], dict[str, torch.Tensor]]  # the trainable tensors (checkpointed)
    load_state: Callable[[dict[str, torch.Tensor]], None]
    accumulation: int = 1
    max_grad_norm: float = 0.0


def fit(run: Run, optimizer, lr_scheduler, g: torch.Generator, checkpoints: Checkpoints | None,
        device: torch.device, amp_dtype: torch.dtype | None, desc: str, show_progress: bool = True,
        on_step: StepHook | None = None) -> dict:
    """Train ``run`` to its last step, resuming from the newest checkpoint; returns the loss record."""
    from tqdm.auto import tqdm

    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    start, losses = 0, []
    last = checkpoints.latest() if checkpoints is not None else None
    if last is not None:
        start, tensors, state = checkpoints.load(last, optimizer, lr_scheduler, g, scaler)
        run.load_state(tensors)
        losses = list(state["losses"])
        log.info("%s: resuming at step %d of %d from %s", run.name, start, run.steps, last)
    bar = tqdm(total=run.steps, initial=start, desc=desc, unit="step", disable=not show_progress)
    for step in range(start, run.steps):
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(run.accumulation):
            loss = run.micro_loss(step, micro, g) / run.accumulation
            scaler.scale(loss).backward()
            total += float(loss.detach())
        if not math.isfinite(total):
            raise DataError(f"{desc}: the loss is not finite at step {step + 1}: lower the learning rate")
        if run.max_grad_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(run.params, run.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        losses.append(total)
        done = step + 1
        if checkpoints is not None and checkpoints.due(done, run.steps):
            checkpoints.save(done, run.state(), optimizer, lr_scheduler, g, {"losses": losses}, scaler)
        bar.update(1)
        if done % 10 == 0 or done == run.steps:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.4f}")
        if on_step is not None:
            on_step(run.name, done)
    bar.close()
    return {"steps": run.steps, "resumed_at": start, "losses": losses}


def loss_summary(losses: Sequence[float], points: int = 10) -> dict:
    """The final loss (mean of the last 10 %) and a short curve (means of equal chunks)."""
    n = len(losses)
    if not n:
        return {"final_loss": None, "loss_curve": []}
    tail = losses[-max(1, n // 10):]
    edges = [round(i * n / min(points, n)) for i in range(min(points, n) + 1)]
    curve = [round(sum(losses[a:b]) / (b - a), 6) for a, b in zip(edges, edges[1:]) if b > a]
    return {"final_loss": round(sum(tail) / len(tail), 6), "loss_curve": curve}


# ------------------------------------------------------------------------------------------ scratch
RUN_FIELDS = ("steps_run", "seconds", "seconds_per_step", "device")  # how this run went
RUN_FIELDS_PER_RUN = ("resumed_at", "reused")


def write_stage_metrics(metrics: Path, stats: dict) -> None:
    """The stage's metrics file without what differs between runs of the same inputs (seconds,
    device, where a resumed run started), which goes to the timings file (core.timings)."""
    from synthmix.core.timings import split, write_timings

    declared, run = split(stats, RUN_FIELDS)
    runs = stats.get("runs") or {}
    declared["runs"] = {k: split(v, RUN_FIELDS_PER_RUN)[0] for k, v in runs.items()}
    run["runs"] = {k: split(v, RUN_FIELDS_PER_RUN)[1] for k, v in runs.items()}
    write_json(metrics, declared)
    write_timings(metrics, run)


def write_summary(path: Path, obj: dict) -> None:
    write_json(path, obj)


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def environment_key(model: SDModel) -> dict:
    """What besides params, data and weights changes the numbers: device kind and dtypes."""
    return {"device": model.device.type, "amp": str(model.amp_dtype), "torch": torch.__version__}
