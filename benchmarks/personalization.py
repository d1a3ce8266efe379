#!/usr/bin/env python
"""Seconds per optimisation step: diffusers-example-style training loops vs synthmix's trainers.

In one process, on the same architecture, images and settings, it times:

1. **LoRA, plain**: the loop of diffusers' ``examples/text_to_image/train_text_to_image_lora.py``
   (torchvision transforms in a shuffled ``DataLoader``, ``vae.encode(...).latent_dist.sample()``
   and the text encoder every step, peft LoRA on to_q/to_k/to_v/to_out.0, AdamW, clipping 1.0);
2. **LoRA, synthmix**: :func:`synthmix.personalize.lora.train_loras` (scope shared) end to end:
   image loading, the VAE posteriors and text conditionings computed once, the loop, saving;
3. **Textual inversion, plain**: the loop of ``examples/textual_inversion/textual_inversion.py``
   (the whole embedding matrix in AdamW, the other rows restored after every step);
4. **Textual inversion, synthmix**: :func:`synthmix.personalize.textual_inversion.train_textual_inversions`.

Weights are random (speed does not depend on their values); the CLIP tokenizer is the real one,
rebuilt offline. The default is the tiny SD 1.x of the tests at 32 px on the CPU; ``--full``
builds the SD 1.5 architecture (UNet, VAE, CLIP ViT-L) at 512 px, for a GPU (bf16 mixed
precision there, as the thesis's kohya runs).

    python benchmarks/personalization.py                   # CPU: tiny SD, 32 px, batch 2, 20 steps
    python benchmarks/personalization.py --threads 1 --repeats 3
    python benchmarks/personalization.py --full --batch 4 --steps 50   # GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from synthmix.config import validate_params
from synthmix.core.device import pick_device
from synthmix.data.manifest import file_sha256, read_manifest
from synthmix.personalize.lora import train_loras
from synthmix.personalize.textual_inversion import IMAGENET_TEMPLATES, train_textual_inversions
from synthmix.testing.sd_architectures import build_pipeline

REPO = Path(__file__).resolve().parents[1]



def endless(loader):
    """Batches of ``loader`` epoch after epoch (the examples' step-bounded loops)."""
    while True:
        yield from loader

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_images(root: Path, n: int, size: int = 32) -> Path:
    """``n`` small photos-like images of one class "cat" and their manifest."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = root / "images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(path)
        lines.append(json.dumps({"path": f"images/{i}.png", "label": "cat", "source": "real",
                                 "sha256": file_sha256(path)}))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return root / "train.jsonl"


def params_for(args, amp: str):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["prepare"]["classes"] = ["cat", "dog"]  # the schema wants two; only "cat" trains
    raw["generate"]["backend"] = "sd"
    raw["generate"]["sd"].update(model="given", trained_lora=True, textual_inversion=True)
    raw["train_lora"].update(images_per_class=args.images, scope="shared", rank=args.rank, alpha=args.rank,
                             optimizer="adamw", lr=1e-4, lr_scheduler="constant", warmup_steps=0, weight_decay=1e-2,
                             max_grad_norm=1.0, batch_size=args.batch, repeats=1, resolution=args.size,
                             mixed_precision=amp, checkpoint_every=0, random_flip=False,
                             epochs=max(1, args.steps * args.batch // args.images))
    raw["train_textual_inversion"].update(images_per_class=args.images, num_vectors=1, initializer="cat",
                                          steps=args.steps, batch_size=args.batch, gradient_accumulation_steps=1,
                                          lr=5e-4, scale_lr=False, resolution=args.size, mixed_precision=amp,
                                          checkpoint_every=0, flip_p=0.5)
    return validate_params(raw)


def weight_dtype(device: torch.device, amp: str) -> torch.dtype:
    if device.type != "cuda" or amp == "no":
        return torch.float32
    return torch.bfloat16 if amp == "bf16" else torch.float16


class ExampleDataset(torch.utils.data.Dataset):
    """What the diffusers examples feed their loops: transforms applied to every image, every step."""

    def __init__(self, records, size: int, tokenizer, captions):
        from torchvision import transforms

        self.records, self.tokenizer, self.captions = records, tokenizer, captions
        self.tf = transforms.Compose([
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(size),
            transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        image = Image.open(self.records[i]["path"]).convert("RGB")
        text = self.captions() if callable(self.captions) else self.captions
        ids = self.tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
                             return_tensors="pt").input_ids[0]
        return {"pixel_values": self.tf(image), "input_ids": ids}


def plain_lora(pipe, records, args, device, amp: str) -> float:
    """Seconds per step of train_text_to_image_lora.py's loop (after 2 warm-up steps)."""
    from diffusers import DDPMScheduler
    from peft import LoraConfig

    wd = weight_dtype(device, amp)
    unet, vae, te = pipe.unet, pipe.vae, pipe.text_encoder
    for m in (unet, vae, te):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    unet.to(device, dtype=wd), vae.to(device, dtype=wd), te.to(device, dtype=wd)
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    data = torch.utils.data.DataLoader(ExampleDataset(records, args.size, pipe.tokenizer, "a photo of a cat"),
                                       batch_size=args.batch, shuffle=True, drop_last=True)

    it = endless(data)
    times = []
    for step in range(args.steps + 2):
        sync(device)
        t0 = time.perf_counter()
        batch = next(it)
        with torch.autocast(device.type, dtype=wd, enabled=wd != torch.float32):
            latents = vae.encode(batch["pixel_values"].to(device, wd)).latent_dist.sample() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device)
            noisy = sched.add_noise(latents, noise, t)
            hidden = te(batch["input_ids"].to(device), return_dict=False)[0]
            pred = unet(noisy, t, hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        sync(device)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def plain_ti(pipe, records, args, device, amp: str) -> float:
    """Seconds per step of textual_inversion.py's loop (after 2 warm-up steps)."""
    from diffusers import DDPMScheduler

    wd = weight_dtype(device, amp)
    tok, te, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae
    tok.add_tokens(["<bench>"])
    token_id = tok.convert_tokens_to_ids("<bench>")
    te.resize_token_embeddings(len(tok), mean_resizing=False)
    emb = te.get_input_embeddings().weight
    with torch.no_grad():
        emb[token_id] = emb[tok.encode("cat", add_special_tokens=False)[0]].clone()
    vae.requires_grad_(False), unet.requires_grad_(False)
    te.requires_grad_(False)
    te.get_input_embeddings().requires_grad_(True)
    unet.to(device, dtype=wd), vae.to(device, dtype=wd), te.to(device)
    opt = torch.optim.AdamW(te.get_input_embeddings().parameters(), lr=5e-4, weight_decay=1e-2)
    orig = te.get_input_embeddings().weight.data.clone()
    keep = torch.ones(len(tok), dtype=torch.bool, device=device)
    keep[token_id] = False
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    from torchvision import transforms

    flip = transforms.RandomHorizontalFlip(0.5)
    ds = ExampleDataset(records, args.size, tok, lambda: random.choice(IMAGENET_TEMPLATES).format("<bench>"))
    data = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True)

    it = endless(data)
    times = []
    for step in range(args.steps + 2):
        sync(device)
        t0 = time.perf_counter()
        batch = next(it)
        pixels = flip(batch["pixel_values"])
        with torch.autocast(device.type, dtype=wd, enabled=wd != torch.float32):
            latents = vae.encode(pixels.to(device, wd)).latent_dist.sample().detach() * vae.config.scaling_factor
            noise = torch.randn_like(latents)
            t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device)
            noisy = sched.add_noise(latents, noise, t)
            hidden = te(batch["input_ids"].to(device))[0].to(wd)
            pred = unet(noisy, t, hidden).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            te.get_input_embeddings().weight[keep] = orig[keep]
        sync(device)
        if step >= 2:
            times.append(time.perf_counter() - t0)
    return sum(times) / len(times)


def synthmix_run(kind: str, pipe, params, records, manifest: Path, tmp: Path, device) -> tuple[float, float]:
    """(end-to-end seconds per step incl. data preparation and saving, loop-only seconds per step)."""
    sync(device)
    t0 = time.perf_counter()
    if kind == "lora":
        stats = train_loras(params, records, ["cat"], tmp / f"out-{kind}", manifest=manifest, device=device,
                            scratch_root=tmp / "partial", show_progress=False, pipe=pipe)
    else:
        stats = train_textual_inversions(params, records, ["cat"], tmp / f"out-{kind}", device=device,
                                         scratch_root=tmp / "partial", show_progress=False, pipe=pipe)
    sync(device)
    return (time.perf_counter() - t0) / stats["steps_run"], stats["seconds_per_step"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="SD 1.5 architecture at 512 px (for a GPU)")
    ap.add_argument("--size", type=int, default=None, help="training resolution (default 32, --full 512)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="optimisation steps timed per loop")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1, help="time every loop this many times")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch's default)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    args.size = args.size or (512 if args.full else 32)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    amp = "bf16" if device.type == "cuda" else "no"
    arch = "sd15" if args.full else "tiny_sd"
    if args.steps * args.batch % args.images:
        ap.error("--steps x --batch must be a multiple of --images (whole epochs for the LoRA trainer)")
    results: dict[str, list[float]] = {k: [] for k in ("lora_plain", "lora_synthmix", "lora_synthmix_loop",
                                                       "ti_plain", "ti_synthmix", "ti_synthmix_loop")}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        manifest = make_images(tmp / "real", args.images)
        records = read_manifest(manifest)
        params = params_for(args, amp)
        base = build_pipeline(arch, seed=0, tokenizer_dir=tmp / "tok")
        for r in range(args.repeats):
            results["lora_plain"].append(plain_lora(copy.deepcopy(base), records, args, device, amp))
            e2e, loop = synthmix_run("lora", copy.deepcopy(base), params, records, manifest, tmp, device)
            results["lora_synthmix"].append(e2e)
            results["lora_synthmix_loop"].append(loop)
            results["ti_plain"].append(plain_ti(copy.deepcopy(base), records, args, device, amp))
            e2e, loop = synthmix_run("ti", copy.deepcopy(base), params, records, manifest, tmp, device)
            results["ti_synthmix"].append(e2e)
            results["ti_synthmix_loop"].append(loop)
            print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in results.items()), flush=True)
    print(f"\n{arch} at {args.size} px, batch {args.batch}, {args.steps} steps, {device.type}"
          f"{' ' + amp if amp != 'no' else ''}, {torch.get_num_threads()} CPU threads; seconds per step "
          f"(synthmix end to end = data preparation, loop and saving over the steps; loop = the loop alone)")
    for k, v in results.items():
        spread = f" (min {min(v):.4f}, max {max(v):.4f}, sd {statistics.stdev(v):.4f})" if len(v) > 1 else ""
        print(f"  {k:20s} {statistics.mean(v):.4f}{spread}")
    for kind in ("lora", "ti"):
        ratio = statistics.mean(results[f"{kind}_plain"]) / statistics.mean(results[f"{kind}_synthmix"])
        print(f"  {kind}: plain / synthmix = {ratio:.2f}x")


if __name__ == "__main__":
    main()
