#!/usr/bin/env python
"""Text-to-image (and image-to-image) throughput: plain diffusers vs synthmix's generate engine,
SD 1.5 architecture.

The SD 1.5 UNet, VAE and CLIP ViT-L text encoder are built from their configs with random
weights (no download; speed does not depend on weight values) and the real CLIP tokenizer
(rebuilt offline). In one run, on this machine (CUDA when present, fp16 there, fp32 on CPU),
it prints images/s for:

1. plain diffusers ``StableDiffusionPipeline``, one image per call;
2. plain diffusers, ``--batch`` images per call;
3. synthmix end to end: ``generate_synthetic`` with the sd backend (per-image prompts drawn
   from wildcard templates, compel embeddings, per-image seeds, DPM++ 2M Karras, fixed
   forward batch, PNG encoding/writing on background threads, manifest), with the same
   pipeline object injected instead of loaded from disk.

    python benchmarks/generation.py                                  # 512 px, 30 steps, CFG 7.5
    python benchmarks/generation.py --batch 16 --images 64 --compile # on a GPU
    python benchmarks/generation.py --size 64 --steps 2 --images 4 --batch 2   # CPU smoke run

``--img2img STRENGTH`` measures image-to-image instead (DA-Fusion / Real Guidance): plain
diffusers ``AutoPipelineForImage2Image.from_pipe`` at that strength vs the engine's
``generate.mode: img2img`` (one variant per source image, the same fixed strength, prompt
"a photo of a {class}"), on random 512 px source photos.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from synthmix import generate as gen
from synthmix.config.presets import deep_merge
from synthmix.config.sections.generate import GenerateParams
from synthmix.generators import base
from synthmix.generators.schedulers import make_scheduler
from synthmix.generators.stable_diffusion import StableDiffusionBackend
from synthmix.testing.sd_architectures import build_pipeline

CLASSES = ["automobile", "cat", "horse", "ship", "truck"]
REPO = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate_params(**overrides) -> GenerateParams:
    """params.yaml's generate section with ``overrides`` merged in, key by key."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())["generate"]
    return GenerateParams(**deep_merge(shipped, overrides))


def source_images(root: Path, n: int, size: int) -> list[dict]:
    """``n`` random photos (a manifest's records), the img2img inputs."""
    from synthmix.data.manifest import file_sha256

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        path = root / CLASSES[i % len(CLASSES)] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        records.append({"path": str(path), "label": CLASSES[i % len(CLASSES)], "source": "real",
                        "sha256": file_sha256(path)})
    return records


def plain(pipe, n: int, batch: int, args, device, sources: list[dict] | None = None) -> float:
    """images/s of plain diffusers calls with ``batch`` prompts each (after one warm-up call);
    with ``sources``, diffusers' img2img pipeline over the same modules at ``args.img2img``."""
    prompts = [f"a photo of a {CLASSES[i % len(CLASSES)]}" for i in range(n)]
    if sources is not None:
        from diffusers import AutoPipelineForImage2Image

        i2i = AutoPipelineForImage2Image.from_pipe(pipe)
        images = [Image.open(r["path"]).convert("RGB") for r in sources]

    def call(ps, seed):
        gens = [torch.Generator(device).manual_seed(seed + k) for k in range(len(ps))]
        if sources is not None:
            i2i(ps, image=images[seed : seed + len(ps)] or images[: len(ps)], strength=args.img2img,
                num_inference_steps=args.steps, guidance_scale=args.guidance, generator=gens, output_type="pil")
            return
        pipe(ps, num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.size, width=args.size,
             generator=gens, output_type="pil")

    call(prompts[:batch], 0)
    sync(device)
    start = time.perf_counter()
    for i in range(0, n, batch):
        call(prompts[i : i + batch], i)
    sync(device)
    return n / (time.perf_counter() - start)


def engine(pipe, n: int, args, device, sources: list[dict] | None = None) -> tuple[float, dict]:
    classes = CLASSES[: max(1, min(n, len(CLASSES)))]
    per_class = max(1, n // len(classes))
    total = per_class * len(classes) if sources is None else len(sources)
    prompt = ({"template": "a photo of a {class}", "suffix": "", "negative": ""} if sources is not None else
              {"template": "__view__ of a __color__ ({class}):1.4 in __location__",
               "suffix": "best quality, 8k, realistic, photo-realistic:1.4",
               "negative": "worst quality:1.4, low quality:1.4, drawings"})
    params = generate_params(
        backend="sd", mode="img2img" if sources is not None else "txt2img", per_class=per_class,
        batch_size=args.batch, write_threads=args.write_threads, seed=0,
        sd={"model": "random-sd15", "steps": args.steps, "guidance_scale": args.guidance, "width": args.size,
            "height": args.size, "forward_batch": args.batch, "compile": args.compile},
        prompt={**prompt, "wildcards_dir": str(REPO / "prompts/wildcards")},
        img2img={"per_image": 1, "strengths": [args.img2img or 1.0], "probs": None, "forbid_class_names": False},
    )
    backend = StableDiffusionBackend(params, None, device, "sd", classes=classes, pipe=pipe)
    base.BACKENDS["sd"] = lambda p, d, dev, **_: backend  # the injected pipeline instead of generate.sd.model
    warm = [base.Job(classes[0], 0, 10_000 + k, k) for k in range(args.batch)]
    backend.generate(warm)  # warm-up (and torch.compile)
    sync(device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        stats = gen.generate_synthetic(params, tmp, Path(tmp) / "out", device=device, show_progress=False,
                                       sources=sources)
        sync(device)
        seconds = time.perf_counter() - start
    return total / seconds, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--images", type=int, default=64, help="images per measurement (batch 1 uses at most 8)")
    ap.add_argument("--write-threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet in the engine")
    ap.add_argument("--img2img", type=float, metavar="STRENGTH", help="measure image-to-image at this strength")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32

    t0 = time.perf_counter()
    pipe = build_pipeline("sd15", seed=0)
    pipe.scheduler = make_scheduler("dpmpp_2m_karras", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"SD 1.5 architecture, random weights, built in {time.perf_counter() - t0:.1f} s; device {name}, {dtype}")
    mode = f"img2img at strength {args.img2img}" if args.img2img is not None else "text-to-image"
    print(f"{args.size} px, {args.steps} steps, CFG {args.guidance}, DPM++ 2M Karras, {mode}")

    tmp_sources = tempfile.TemporaryDirectory()
    sources = source_images(Path(tmp_sources.name), args.images, args.size) if args.img2img is not None else None
    n1 = min(args.images, 8)
    r1 = plain(pipe, n1, 1, args, device, sources)
    print(f"plain diffusers, batch 1:            {r1:8.3f} images/s ({n1} images)")
    rb = plain(pipe, args.images, args.batch, args, device, sources)
    print(f"plain diffusers, batch {args.batch:<3d}:          {rb:8.3f} images/s ({args.images} images)")
    re_, stats = engine(pipe, args.images, args, device, sources)
    print(f"synthmix engine end to end, batch {args.batch:<3d}: {re_:8.3f} images/s ({stats['total']} PNGs + manifest)")
    print(f"engine / plain batch 1: {re_ / r1:.2f}x   engine / plain batch {args.batch}: {re_ / rb:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "size": args.size, "steps": args.steps, "batch": args.batch,
                                         "img2img_strength": args.img2img, "plain_batch1": r1, "plain_batch": rb,
                                         "engine": re_}, indent=2))
    tmp_sources.cleanup()


if __name__ == "__main__":
    main()
