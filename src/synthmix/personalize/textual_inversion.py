"""Textual inversion: one learned token per class (stage ``train_textual_inversion``).

The recipe of diffusers' ``examples/textual_inversion/textual_inversion.py`` (and DA-Fusion's
use of it), as a resumable, deterministic pipeline stage:

- each class gets the placeholder token ``<class>`` with ``num_vectors`` embedding vectors
  (tokens ``<class>``, ``<class>_1``, ... as diffusers names them), added to the tokenizer(s);
- the vectors start from the token embeddings of ``initializer``: the class name's tokens
  (``class_name``; DA-Fusion's final setting, 4 vectors) or a word (the first setting: 1 vector
  from "the"); with k tokens and n vectors, vector i is token i mod k (k <= n) or the mean of
  the i-th of n near-equal chunks of the tokens (k > n);
- captions are the imagenet "a photo of a {}" templates of the diffusers example, drawn per
  sample; images are flipped horizontally with probability ``flip_p``;
- only the new rows train: the text encoder's token embedding is wrapped so that new token
  ids read a small trainable matrix and every other id the frozen table (the example's
  "restore the other rows after every step", without an optimizer state for the whole
  vocabulary); AdamW, lr x batch x gradient accumulation with ``scale_lr``.

Saved per class as ``models/textual_inversion/<class>/learned_embeds.safetensors``: SD 1.x/2.x
``{"<class>": (n, dim)}`` (``pipe.load_textual_inversion(path, token="<class>")``), SDXL
``{"clip_l": (n, 768), "clip_g": (n, 1280)}`` for the two text encoders (diffusers' SDXL
convention: load each into its encoder and tokenizer).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthmix.config import Params
from synthmix.core.atomic import replace_dir, write_json
from synthmix.core.device import pick_device
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.classes import read_classes
from synthmix.data.manifest import file_sha256, read_manifest
from synthmix.generators.adapters import INDEX, TI_FILE, TI_FORMAT, class_token, vector_tokens
from synthmix.personalize.data import Upsampler, class_text, load_pixels, select_images
from synthmix.personalize.lora import skip_reason, write_skip
from synthmix.personalize.training import (
    Checkpoints,
    Run,
    StepHook,
    encode_text,
    environment_key,
    finish_scratch,
    fit,
    latent_posteriors,
    load_sd_model,
    loss_summary,
    make_lr_scheduler,
    noise_loss,
    read_summary,
    run_key,
    sample_latents,
    scratch_dir,
    stream_batch,
    tokenize,
    training_resolution,
    write_stage_metrics,
    write_summary,
)

log = logging.getLogger(__name__)

# diffusers examples/textual_inversion/textual_inversion.py: imagenet_templates_small
IMAGENET_TEMPLATES = [
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
]

ENCODER_KEYS = {"sd": [None], "sdxl": ["clip_l", "clip_g"]}


class TokenRows(nn.Module):
    """A token embedding whose ids ``first .. first + n - 1`` read the trainable ``rows``;
    every other id reads the frozen ``base`` table."""

    def __init__(self, base: nn.Embedding, first: int, rows: torch.Tensor):
        super().__init__()
        self.base, self.first = base, first
        self.rows = nn.Parameter(rows.detach().clone().float())

    @property
    def weight(self) -> torch.Tensor:  # what code reading `.weight` of an embedding expects
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids)
        rel = ids - self.first
        new = (rel >= 0) & (rel < self.rows.shape[0])
        picked = self.rows[rel.clamp(0, self.rows.shape[0] - 1)].to(out.dtype)
        return torch.where(new.unsqueeze(-1), picked, out)


def initial_rows(table: torch.Tensor, init_ids: Sequence[int], n: int) -> torch.Tensor:
    """n starting vectors from the embeddings of ``init_ids`` (see the module docstring)."""
    k = len(init_ids)
    if k >= n:
        return torch.stack([table[list(chunk)].mean(0) for chunk in np.array_split(np.asarray(init_ids), n)])
    return torch.stack([table[init_ids[i % k]] for i in range(n)])


def save_embeddings(path: Path, family: str, token: str, rows: Sequence[torch.Tensor]) -> None:
    """The learned vectors in diffusers' layout (see the module docstring), atomically."""
    from safetensors.torch import save_file

    if family == "sd":
        tensors = {token: rows[0]}
    else:
        tensors = dict(zip(ENCODER_KEYS["sdxl"], rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    save_file({k: v.detach().float().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def add_class_tokens(model, classes: Sequence[str], n: int) -> dict[str, list[list[int]]]:
    """Add every class's tokens to the tokenizer(s), grow the embedding tables; class -> ids per tokenizer."""
    ids: dict[str, list[list[int]]] = {c: [] for c in classes}
    for tok, te in zip(model.tokenizers, model.text_encoders):
        for c in classes:
            names = vector_tokens(class_token(c), n)
            added = tok.add_tokens(names)
            if added != n:
                raise DataError(f"the tokenizer already holds a token of {names}: cannot add the class token "
                                f"{class_token(c)} (rename the class)")
            ids[c].append(tok.convert_tokens_to_ids(names))
        te.resize_token_embeddings(len(tok), mean_resizing=False)
        te.requires_grad_(False)
    return ids


def train_textual_inversions(params: Params, records: Sequence[dict], classes: Sequence[str],
                             out: str | os.PathLike, *, device: torch.device | str | None = None,
                             scratch_root: str | os.PathLike | None = None, show_progress: bool = True,
                             on_step: StepHook | None = None, pipe=None,
                             erased_dir: str | os.PathLike | None = None) -> dict:
    """Learn one token per class (``params.train_textual_inversion``) and write ``out``.

    Resumable like :func:`synthmix.personalize.lora.train_loras` (scratch folder
    ``<out's parent>/.partial/train_textual_inversion-<key>``). Returns the statistics.
    """
    p = params.train_textual_inversion
    out = Path(out)
    device = pick_device(params.device) if device is None else torch.device(device)
    chosen = select_images(records, classes, p.images_per_class, None, p.seed,
                           "train_textual_inversion.images_per_class")
    upsample = Upsampler(p.upsample, training_resolution(params, p.resolution), p.realesrgan_weights, device,
                         "train_textual_inversion")
    _, pixels = load_pixels(chosen, upsample)
    model = load_sd_model(params, device, p.resolution, p.mixed_precision, pipe)
    erased = None
    if params.generate.sd.erased:  # DA-Fusion: tokens learnt on the UNet that has forgotten the classes
        from synthmix.generators.erased import erased_sha256, load_erased_unet

        if erased_dir is None:
            raise ParamsError("generate.sd.erased = true needs the erase stage's folder (--erased models/erased)")
        erased = erased_sha256(erased_dir)
        unet = load_erased_unet(Path(erased_dir), model.model_sha256, device, model.weight_dtype)
        model.pipe.unet = unet.requires_grad_(False).eval()
    key = run_key({
        "stage": "train_textual_inversion/1", "family": model.family, "model_sha256": model.model_sha256,
        "erased_unet": erased,
        "resolution": model.resolution, "params": p.model_dump(exclude={"checkpoint_every"}),
        "templates": IMAGENET_TEMPLATES, "images": [(r["label"], r["sha256"]) for r in chosen],
        "realesrgan_sha256": upsample.weights_sha256, "env": environment_key(model),
    })
    scratch = scratch_dir(out, "train_textual_inversion", key, scratch_root)
    log.info("train_textual_inversion: %d images, %d classes, scratch %s", len(chosen), len(classes), scratch)

    mean, std = latent_posteriors(model, pixels)
    flipped = latent_posteriors(model, pixels.flip(-1)) if p.flip_p > 0 else None
    for te in model.text_encoders:
        te.to(device, dtype=torch.float32)  # the new rows train through it: fp32, autocast on CUDA
    token_ids = add_class_tokens(model, classes, p.num_vectors)

    trained, stats_runs, total_steps = [], {}, 0
    start = time.perf_counter()
    for c in classes:
        idx = [i for i, r in enumerate(chosen) if r["label"] == c]
        final = scratch / "done" / c / TI_FILE
        summary_path = scratch / "summaries" / f"{c}.json"
        summary = read_summary(summary_path) if final.is_file() else None
        reused = summary is not None  # finished by an earlier, interrupted run
        if summary is None:
            summary = _train_one(model, p, c, idx, token_ids[c], mean, std, flipped, scratch, final,
                                 show_progress, on_step)
            write_summary(summary_path, summary)
            total_steps += summary["steps"] - summary["resumed_at"]
        else:
            log.info("train_textual_inversion %s: finished in an earlier run (%s)", c, final)
        trained.append({"class": c, "token": class_token(c), "num_vectors": p.num_vectors,
                        "initializer": summary["initializer"], "file": f"{c}/{TI_FILE}",
                        "sha256": file_sha256(final), "images": [chosen[i]["sha256"] for i in idx],
                        "steps": summary["steps"]})
        stats_runs[c] = {**{k: summary[k] for k in ("steps", "resumed_at", "final_loss", "loss_curve")},
                            "reused": reused}
    seconds = time.perf_counter() - start
    index = {
        "format": TI_FORMAT, "backend": model.family, "model_sha256": model.model_sha256,
        "num_vectors": p.num_vectors, "resolution": model.resolution, "prediction_type": model.prediction_type,
        "upsample": p.upsample, "realesrgan_sha256": upsample.weights_sha256,
        "keys": ENCODER_KEYS[model.family] if model.family == "sdxl" else ["<token>"],
        "trained": trained,
    }
    write_json(scratch / "done" / INDEX, index)
    replace_dir(scratch / "done", out)
    finish_scratch(scratch)
    return {
        "backend": model.family, "trained": len(trained), "images": len(chosen), "runs": stats_runs,
        "steps_run": total_steps, "seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / total_steps, 4) if total_steps else None, "device": device.type,
    }


def _train_one(model, p, label: str, idx: list[int], ids_per_tok: list[list[int]], mean, std, flipped,
               scratch: Path, final: Path, show_progress: bool, on_step) -> dict:
    if not idx:
        raise DataError(f"train_textual_inversion {label}: no training images")
    dev = model.device
    token = class_token(label)
    placeholder = " ".join(vector_tokens(token, p.num_vectors))
    init_text = class_text(label) if p.initializer == "class_name" else p.initializer
    wrappers = []
    for tok, te, ids in zip(model.tokenizers, model.text_encoders, ids_per_tok):
        init_ids = tok.encode(init_text, add_special_tokens=False)
        if not init_ids:
            raise DataError(f"train_textual_inversion.initializer: {init_text!r} has no tokens")
        base = te.get_input_embeddings()
        rows = initial_rows(base.weight.detach().float(), init_ids, p.num_vectors)
        if ids != list(range(ids[0], ids[0] + p.num_vectors)):
            raise DataError(f"the tokens of {token} did not get consecutive ids ({ids})")
        wrapper = TokenRows(base, ids[0], rows).to(dev)
        te.set_input_embeddings(wrapper)
        if te.get_input_embeddings() is not wrapper:
            raise RuntimeError(f"{type(te).__name__}: could not wrap the token embedding")
        wrappers.append(wrapper)
    params = [w.rows for w in wrappers]
    b, accum = p.batch_size, p.gradient_accumulation_steps
    lr = p.lr * b * accum if p.scale_lr else p.lr

    def micro_loss(step: int, micro: int, g: torch.Generator) -> torch.Tensor:
        images = [idx[i] for i in stream_batch(len(idx), b, step * accum + micro, p.seed, label)]
        m, s = mean[images], std[images]
        if flipped is not None:
            flip = (torch.rand(len(images), generator=g) < p.flip_p).view(-1, 1, 1, 1)
            m, s = torch.where(flip, flipped[0][images], m), torch.where(flip, flipped[1][images], s)
        choice = torch.randint(len(IMAGENET_TEMPLATES), (len(images),), generator=g).tolist()
        texts = [IMAGENET_TEMPLATES[k].format(placeholder) for k in choice]
        latents = sample_latents(model, m, s, g)
        with torch.autocast(dev.type, dtype=model.amp_dtype, enabled=model.amp_dtype is not None):
            hidden, pooled = encode_text(model, tokenize(model, texts))
        return noise_loss(model, latents, hidden, pooled, g)

    def state() -> dict[str, torch.Tensor]:
        return {f"rows_{i}": w.rows for i, w in enumerate(wrappers)}

    def load_state(tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for i, w in enumerate(wrappers):
                w.rows.copy_(tensors[f"rows_{i}"])

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=p.weight_decay)
    lr_scheduler = make_lr_scheduler(p.lr_scheduler, optimizer, p.warmup_steps, p.steps)
    g = torch.Generator().manual_seed(derive_seed("ti-train", p.seed, label))
    ckpt = Checkpoints(scratch / "checkpoints" / label, p.checkpoint_every, "train_textual_inversion")
    try:
        record = fit(Run(label, p.steps, params, micro_loss, state, load_state, accum, 0.0),
                     optimizer, lr_scheduler, g, ckpt, dev, model.amp_dtype, f"train_textual_inversion {label}",
                     show_progress, on_step)
        save_embeddings(final, model.family, token, [w.rows for w in wrappers])
    finally:
        for te, w in zip(model.text_encoders, wrappers):
            te.set_input_embeddings(w.base)
    shutil.rmtree(ckpt.root, ignore_errors=True)
    return {"steps": p.steps, "resumed_at": record["resumed_at"], "initializer": init_text, "lr": lr,
            **loss_summary(record["losses"])}


def train_textual_inversion_stage(params: Params, *, train: Input, classes: Input, erased: Input, out: Output,
                                  metrics: Output) -> None:
    """Stage train_textual_inversion: one learned token <class> per class for generate.sd.model
    (models/textual_inversion/<class>/learned_embeds.safetensors and index.json).

    With generate.backend ddpm, or generate.sd.textual_inversion false, nothing is trained: the
    folder holds only index.json saying so. Resumable like train_lora. With generate.sd.erased,
    the tokens are learnt on the erase stage's UNet (``erased``), as DA-Fusion did.
    """
    reason = skip_reason(params, "textual_inversion")
    if reason:
        write_skip(Path(out), TI_FORMAT, params.generate.backend, reason)
        write_json(metrics, {"backend": params.generate.backend, "trained": 0, "skipped": reason})
        print(f"train_textual_inversion: nothing to train ({reason})")
        return
    stats = train_textual_inversions(params, read_manifest(train), read_classes(classes), out, erased_dir=erased)
    write_stage_metrics(metrics, stats)
    print(f"train_textual_inversion: {stats['trained']} token(s) in {out}, {stats['steps_run']} steps, "
          f"{stats['seconds']:.0f} s")
