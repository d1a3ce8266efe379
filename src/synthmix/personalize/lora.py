"""LoRA fine-tuning of the Stable Diffusion model on real training images (stage ``train_lora``).

What diffusers' ``examples/text_to_image/train_text_to_image_lora.py`` does, as a resumable,
deterministic pipeline stage: peft LoRA adapters (``LoraConfig`` with ``init_lora_weights=
"gaussian"``) on the UNet attention projections ``to_q, to_k, to_v, to_out.0`` (and with
``train_text_encoder`` on the text encoders' ``q_proj, k_proj, v_proj, out_proj``), the
noise-prediction loss of :mod:`synthmix.personalize.training`, saved with the pipeline's
``save_lora_weights`` from ``get_peft_model_state_dict`` + ``convert_state_dict_to_diffusers``
and the adapter's LoraConfig as metadata (so ``pipe.load_lora_weights`` restores rank *and*
alpha). ``scope: per_class`` trains one LoRA per class on that class's images
(``models/lora/<class>.safetensors``, applied by generate only to that class); ``shared`` one
for every class (``models/lora/pytorch_lora_weights.safetensors``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from synthmix.config import Params
from synthmix.core.atomic import building_dir, replace_dir, write_json
from synthmix.core.device import pick_device
from synthmix.core.errors import DataError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.classes import read_classes
from synthmix.data.manifest import file_sha256, read_manifest
from synthmix.generators.adapters import INDEX, LORA_FORMAT, SHARED_LORA_FILE, skip_index
from synthmix.personalize.data import Upsampler, captions_for, load_pixels, select_images
from synthmix.personalize.training import (
    Checkpoints,
    Run,
    StepHook,
    encode_text,
    environment_key,
    epoch_order,
    finish_scratch,
    fit,
    latent_posteriors,
    load_sd_model,
    loss_summary,
    make_lr_scheduler,
    make_optimizer,
    noise_loss,
    read_summary,
    require_bitsandbytes,
    run_key,
    sample_latents,
    scratch_dir,
    tokenize,
    training_resolution,
    write_stage_metrics,
    write_summary,
)

log = logging.getLogger(__name__)

UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
ADAPTER = "synthmix_lora"


def skip_reason(params: Params, flag: str) -> str | None:
    """Why a personalization stage has nothing to train, or None."""
    backend = params.generate.backend
    if backend not in ("sd", "sdxl"):
        return (f"generate.backend = {backend}: its generator has no text encoder; LoRA and textual "
                "inversion train only for sd / sdxl")
    if not getattr(params.generate.sd, flag):
        return f"generate.sd.{flag} = false: generate does not use this stage's output"
    return None


def write_skip(out: Path, fmt: str, backend: str, reason: str) -> None:
    with building_dir(out) as tmp:
        write_json(tmp / INDEX, skip_index(fmt, backend, reason))


def lora_file(label: str | None) -> str:
    return SHARED_LORA_FILE if label is None else f"{label}.safetensors"


def _metadata(module, adapter: str) -> dict:
    """The adapter's LoraConfig for the file's metadata, sets sorted (the bytes must not vary)."""
    cfg = module.peft_config[adapter].to_dict()
    return {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in cfg.items()}


def remove_adapter(module, adapter: str) -> None:
    """Take a peft-injected adapter out of ``module`` again (the base layers stay as they were)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for layer in module.modules():
        if isinstance(layer, BaseTunerLayer):
            layer.delete_adapter(adapter)
    getattr(module, "peft_config", {}).pop(adapter, None)


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's header with its ``__metadata__`` keys sorted.

    safetensors keeps the metadata in a Rust HashMap, whose order changes from one save to the
    next: with two keys (diffusers writes ``format`` and ``lora_adapter_metadata``) the same
    weights would give different bytes, and DVC a different hash. Tensor entries and data stay
    as they are (offsets are relative to the end of the header).
    """
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    if "__metadata__" in header:
        header = {"__metadata__": dict(sorted(header["__metadata__"].items())),
                  **{k: v for k, v in header.items() if k != "__metadata__"}}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def save_lora(model, out_file: Path, adapter: str, text_encoder: bool) -> None:
    """``save_lora_weights`` of the pipeline class (diffusers format + LoraConfig metadata), atomically."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    def layers(module):
        return convert_state_dict_to_diffusers(get_peft_model_state_dict(module, adapter_name=adapter))

    unet = model.pipe.unet
    kwargs = {"unet_lora_layers": layers(unet), "unet_lora_adapter_metadata": _metadata(unet, adapter)}
    if text_encoder:
        names = ["text_encoder"] if model.family == "sd" else ["text_encoder", "text_encoder_2"]
        for name, te in zip(names, model.text_encoders):
            kwargs[f"{name}_lora_layers"] = layers(te)
            kwargs[f"{name}_lora_adapter_metadata"] = _metadata(te, adapter)
    cls = StableDiffusionPipeline if model.family == "sd" else StableDiffusionXLPipeline
    tmp = out_file.parent / f".{out_file.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        cls.save_lora_weights(str(tmp), weight_name=out_file.name, safe_serialization=True, **kwargs)
        canonical_header(tmp / out_file.name)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / out_file.name, out_file)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_loras(params: Params, records: Sequence[dict], classes: Sequence[str], out: str | os.PathLike, *,
                manifest: str | os.PathLike, device: torch.device | str | None = None,
                scratch_root: str | os.PathLike | None = None, show_progress: bool = True,
                on_step: StepHook | None = None, pipe=None) -> dict:
    """Train the LoRA(s) of ``params.train_lora`` and write ``out`` (LoRA files + index.json).

    Resumable: checkpoints and finished LoRAs wait in ``<out's parent>/.partial/train_lora-<key>``.
    ``on_step(run, steps_done)`` is called after every optimiser step (tests interrupt with it).
    Returns the statistics written to the stage's metrics file.
    """
    from peft import LoraConfig

    p = params.train_lora
    out = Path(out)
    if p.optimizer == "adamw8bit":
        require_bitsandbytes("train_lora")
    device = pick_device(params.device) if device is None else torch.device(device)
    chosen = select_images(records, classes, p.images_per_class, p.images_total, p.seed, "train_lora.images_per_class")
    upsample = Upsampler(p.upsample, training_resolution(params, p.resolution), p.realesrgan_weights, device,
                         "train_lora")
    originals, pixels = load_pixels(chosen, upsample)
    captions = captions_for(p, chosen, originals, Path(manifest), device)  # BLIP before the SD model: less memory
    model = load_sd_model(params, device, p.resolution, p.mixed_precision, pipe)
    if p.scope == "per_class":
        runs = [(c, c, [i for i, r in enumerate(chosen) if r["label"] == c]) for c in classes]
    else:
        runs = [("shared", None, list(range(len(chosen))))]

    key = run_key({
        "stage": "train_lora/1", "family": model.family, "model_sha256": model.model_sha256,
        "resolution": model.resolution, "params": p.model_dump(exclude={"checkpoint_every"}),
        "images": [(r["label"], r["sha256"]) for r in chosen], "captions": captions,
        "realesrgan_sha256": upsample.weights_sha256, "env": environment_key(model),
    })
    scratch = scratch_dir(out, "train_lora", key, scratch_root)
    log.info("train_lora: %d images, %d run(s), scratch %s", len(chosen), len(runs), scratch)

    mean, std = latent_posteriors(model, pixels)
    flipped = latent_posteriors(model, pixels.flip(-1)) if p.random_flip else None
    te_wd = model.weight_dtype if p.train_text_encoder else torch.float32
    for te in model.text_encoders:
        te.to(device, dtype=te_wd)
    cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    if not p.train_text_encoder:  # frozen text: encode each distinct caption once
        with torch.no_grad():
            for text in dict.fromkeys(captions):
                hidden, pooled = encode_text(model, tokenize(model, [text]))
                cache[text] = (hidden.float().cpu(), None if pooled is None else pooled.float().cpu())
        for te in model.text_encoders:
            te.to("cpu")

    trained, stats_runs = [], {}
    start = time.perf_counter()
    total_steps = 0
    for name, label, idx in runs:
        fname = lora_file(label)
        final = scratch / "done" / fname
        summary_path = scratch / "summaries" / f"{name}.json"
        summary = read_summary(summary_path) if final.is_file() else None
        reused = summary is not None  # finished by an earlier, interrupted run
        if summary is None:
            summary = _train_one(model, p, name, idx, mean, std, flipped, captions, cache, scratch, final,
                                 show_progress, on_step, LoraConfig)
            write_summary(summary_path, summary)
            total_steps += summary["steps"] - summary["resumed_at"]
        else:
            log.info("train_lora %s: finished in an earlier run (%s)", name, final)
        trained.append({"class": label, "file": fname, "sha256": file_sha256(final),
                        "images": [chosen[i]["sha256"] for i in idx],
                        "captions": sorted(set(captions[i] for i in idx)), "steps": summary["steps"]})
        stats_runs[name] = {**{k: summary[k] for k in ("steps", "resumed_at", "final_loss", "loss_curve")},
                            "reused": reused}
    seconds = time.perf_counter() - start

    index = {
        "format": LORA_FORMAT, "backend": model.family, "model_sha256": model.model_sha256,
        "scope": p.scope, "rank": p.rank, "alpha": p.alpha, "train_text_encoder": p.train_text_encoder,
        "resolution": model.resolution, "prediction_type": model.prediction_type,
        "upsample": p.upsample, "realesrgan_sha256": upsample.weights_sha256,
        "trained": trained,
    }
    write_json(scratch / "done" / INDEX, index)
    replace_dir(scratch / "done", out)
    finish_scratch(scratch)
    return {
        "backend": model.family, "trained": len(trained), "scope": p.scope, "images": len(chosen),
        "runs": stats_runs, "steps_run": total_steps, "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / total_steps, 4) if total_steps else None, "device": device.type,
    }


def _train_one(model, p, name: str, idx: list[int], mean, std, flipped, captions, cache, scratch: Path,
               final: Path, show_progress: bool, on_step, LoraConfig) -> dict:
    """One LoRA: add the adapter, fit (resuming), save, remove the adapter."""
    if not idx:
        raise DataError(f"train_lora {name}: no training images")
    unet, dev = model.pipe.unet, model.device
    torch.manual_seed(derive_seed("lora-init", p.seed, name))  # peft's gaussian init of lora_A
    unet.add_adapter(LoraConfig(r=p.rank, lora_alpha=p.alpha, init_lora_weights="gaussian",
                                target_modules=UNET_TARGETS), adapter_name=ADAPTER)
    modules = {"unet": unet}
    if p.train_text_encoder:  # peft directly (transformers' own add_adapter wants a newer peft)
        from peft import inject_adapter_in_model

        for i, te in enumerate(model.text_encoders):
            inject_adapter_in_model(LoraConfig(r=p.rank, lora_alpha=p.alpha, init_lora_weights="gaussian",
                                               target_modules=TEXT_TARGETS), te, adapter_name=ADAPTER)
            te.train()
            modules[f"text_encoder{'' if i == 0 else '_2'}"] = te
    named = {f"{m}.{n}": t for m, module in modules.items() for n, t in module.named_parameters() if t.requires_grad}
    for t in named.values():  # trainable weights in fp32 (frozen ones may be bf16/fp16)
        t.data = t.data.float()
    params = list(named.values())

    b, n_items = p.batch_size, len(idx) * p.repeats
    per_epoch = math.ceil(n_items / b)
    steps = p.epochs * per_epoch

    def micro_loss(step: int, micro: int, g: torch.Generator) -> torch.Tensor:
        epoch, k = divmod(step, per_epoch)
        order = epoch_order(n_items, p.seed, name, epoch)[k * b : (k + 1) * b]
        images = [idx[i % len(idx)] for i in order]
        m, s = mean[images], std[images]
        if flipped is not None:
            flip = (torch.rand(len(images), generator=g) < 0.5).view(-1, 1, 1, 1)
            m, s = torch.where(flip, flipped[0][images], m), torch.where(flip, flipped[1][images], s)
        latents = sample_latents(model, m, s, g)
        texts = [captions[i] for i in images]
        if p.train_text_encoder:
            with torch.autocast(dev.type, dtype=model.amp_dtype, enabled=model.amp_dtype is not None):
                hidden, pooled = encode_text(model, tokenize(model, texts))
        else:
            hidden = torch.cat([cache[t][0] for t in texts])
            pooled = torch.cat([cache[t][1] for t in texts]) if model.family == "sdxl" else None
        return noise_loss(model, latents, hidden, pooled, g)

    def load_state(tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, t in named.items():
                t.copy_(tensors[k])

    optimizer = make_optimizer(p.optimizer, params, p.lr, p.weight_decay, "train_lora")
    lr_scheduler = make_lr_scheduler(p.lr_scheduler, optimizer, p.warmup_steps, steps)
    g = torch.Generator().manual_seed(derive_seed("lora-train", p.seed, name))
    ckpt = Checkpoints(scratch / "checkpoints" / name, p.checkpoint_every)
    unet.train()
    record = fit(Run(name, steps, params, micro_loss, lambda: dict(named), load_state, 1, p.max_grad_norm),
                 optimizer, lr_scheduler, g, ckpt, dev, model.amp_dtype, f"train_lora {name}", show_progress, on_step)
    unet.eval()
    save_lora(model, final, ADAPTER, p.train_text_encoder)
    unet.delete_adapters(ADAPTER)
    for m, module in modules.items():
        if m != "unet":
            remove_adapter(module, ADAPTER)
            module.eval()
    shutil.rmtree(ckpt.root, ignore_errors=True)
    return {"steps": steps, "resumed_at": record["resumed_at"], **loss_summary(record["losses"])}


def train_lora_stage(params: Params, *, train: Input, classes: Input, out: Output, metrics: Output) -> None:
    """Stage train_lora: LoRA(s) of generate.sd.model trained on real training images
    (models/lora: <class>.safetensors per class, or one shared file, and index.json).

    With generate.backend ddpm, or generate.sd.trained_lora false, nothing is trained: the
    folder holds only index.json saying so. Resumable: checkpoints every
    train_lora.checkpoint_every steps in models/.partial/train_lora-<hash>.
    """
    reason = skip_reason(params, "trained_lora")
    if reason:
        write_skip(Path(out), LORA_FORMAT, params.generate.backend, reason)
        write_json(metrics, {"backend": params.generate.backend, "trained": 0, "skipped": reason})
        print(f"train_lora: nothing to train ({reason})")
        return
    stats = train_loras(params, read_manifest(train), read_classes(classes), out, manifest=train)
    write_stage_metrics(metrics, stats)
    print(f"train_lora: {stats['trained']} LoRA(s) in {out}, {stats['steps_run']} steps, {stats['seconds']:.0f} s")
