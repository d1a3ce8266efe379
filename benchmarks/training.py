#!/usr/bin/env python
"""Classifier-training throughput: synthmix's in-memory path vs a plain PyTorch DataLoader loop.

Both train the same network (timm's ResNet-18, synthmix's default ``train.arch``) on the same
PNG files for the same number of epochs, in this process, on this machine (CUDA when present),
with the same number of CPU threads. The baseline is the usual recipe: a Dataset that opens
each PNG with PIL, resizes it bicubically and converts it to a tensor every epoch, fed by a
DataLoader. synthmix decodes once into a uint8 tensor and slices batches from it
(src/synthmix/classify/train.py); its figure also includes the decoding, a validation pass
each epoch and the checkpoint.

The two paths run alternately ``--repeats`` times (plain, synthmix, plain, synthmix, ...), so
that a burst of load from other processes does not land on one side only; every pair's ratio
is printed, with the load average. It also prints the two costs the ratio is made of: one
decode pass over the images and the mean training step.

``--freeze-backbone`` measures the linear-probe setting (``train.freeze_backbone: true``): a
plain DataLoader loop that runs the frozen backbone on every batch, synthmix with the backbone
per batch (``cache_features=False``), and synthmix's default, which computes each image's
features once and trains the head on them.

    python benchmarks/training.py [--images-per-class 225] [--epochs 3] [--input-size 32]
                                  [--threads N] [--repeats 1] [--freeze-backbone]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from synthmix.classify.models import build_model, embed, freeze_backbone
from synthmix.classify.train import train_classifier
from synthmix.config.sections.train import TrainParams
from synthmix.data.images import load_images
from synthmix.data.manifest import file_sha256

REPO = Path(__file__).resolve().parents[1]


def make_pngs(root: Path, classes: int, per_class: int) -> list[dict]:
    rng = np.random.default_rng(0)
    recs = []
    for c in range(classes):
        for i in range(per_class):
            path = root / f"c{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L").save(path)
            recs.append({"path": str(path), "label": f"c{c}", "source": "real", "sha256": file_sha256(path)})
    return recs


class PlainDataset(torch.utils.data.Dataset):
    def __init__(self, recs, classes, size):
        self.recs, self.index, self.size = recs, {c: i for i, c in enumerate(classes)}, size

    def __len__(self):
        return len(self.recs)

    def __getitem__(self, i):
        rec = self.recs[i]
        img = Image.open(rec["path"]).convert("RGB").resize((self.size, self.size), Image.BICUBIC)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)
        return x, self.index[rec["label"]]


def plain_loop(recs, classes, size, epochs, batch_size, device, frozen: bool) -> float:
    """img/s of the usual recipe; ``frozen``: only the head trains, the backbone runs per batch."""
    torch.manual_seed(0)
    model = build_model("resnet18", len(classes)).to(device)
    head = freeze_backbone(model) if frozen else None
    opt = torch.optim.Adam((head or model).parameters(), 1e-3)
    loader = torch.utils.data.DataLoader(PlainDataset(recs, classes, size), batch_size=batch_size, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        model.eval() if frozen else model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            if frozen:
                with torch.no_grad():
                    feats = embed(model, x)
                logits = head(feats)
            else:
                logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(recs) * epochs / (time.perf_counter() - start)


def synthmix_run(params, recs, val, classes, out: Path, cache: bool) -> float:
    start = time.perf_counter()
    train_classifier(params, 0, recs, val, classes, out, cache_features=cache)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(recs) * params.epochs / (time.perf_counter() - start)


def step_seconds(size: int, batch_size: int, classes: int, device, channels_last: bool, n: int = 10) -> float:
    """Mean seconds of one full training step (forward, backward, Adam) on a random batch, in
    channels_last layout (synthmix's) or PyTorch's default contiguous layout (the plain loop's)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    model = build_model("resnet18", classes).to(device).to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, classes, (batch_size,), device=device)
    for i in range(n + 2):
        if i == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--images-per-class", type=int, default=225)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both paths (0 = PyTorch's default)")
    ap.add_argument("--repeats", type=int, default=1, help="alternating plain/synthmix pairs")
    ap.add_argument("--freeze-backbone", action="store_true", help="linear probe: frozen backbone, head only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classes = [f"c{c}" for c in range(args.classes)]
    shipped = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["train"]
    params = TrainParams.model_validate({
        **shipped, "seeds": [0], "epochs": args.epochs, "batch_size": args.batch_size,
        "input_size": args.input_size, "augment": False, "freeze_backbone": args.freeze_backbone,
        "num_threads": args.threads,
    })  # fmt: skip
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {device} ({where}), {os.cpu_count()} CPUs, load average {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        recs = make_pngs(Path(tmp), args.classes, args.images_per_class)
        val = recs[:: max(1, len(recs) // 64)]
        print(f"{len(recs)} images, {args.epochs} epochs, batch {args.batch_size}, {args.input_size} px, "
              f"{'frozen backbone (linear probe)' if args.freeze_backbone else 'full training'}")
        start = time.perf_counter()
        load_images(recs, classes, args.input_size, "decode")
        decode = time.perf_counter() - start
        print(f"one decode pass       : {decode:8.2f} s  (the plain loop pays it every epoch)")
        if not args.freeze_backbone:
            steps = -(-len(recs) // args.batch_size)
            plain_step = step_seconds(args.input_size, args.batch_size, args.classes, device, channels_last=False)
            step = step_seconds(args.input_size, args.batch_size, args.classes, device, channels_last=True)
            print(f"training step         : {plain_step * 1000:8.1f} ms contiguous (plain), {step * 1000:.1f} ms "
                  f"channels_last (synthmix); {steps} steps per epoch")
            print(f"expected ratio        : {(plain_step * steps + decode) / (step * steps):8.2f}x  "
                  f"(decoding alone: {(step * steps + decode) / (step * steps):.2f}x)")
        ratios = []
        for r in range(1, args.repeats + 1):
            before = load()
            plain = plain_loop(recs, classes, args.input_size, args.epochs, args.batch_size, device, args.freeze_backbone)
            if args.freeze_backbone:
                per_batch = synthmix_run(params, recs, val, classes, Path(tmp) / f"p{r}", cache=False)
            ours = synthmix_run(params, recs, val, classes, Path(tmp) / f"m{r}", cache=True)
            ratios.append(ours / plain)
            print(f"[{r}] load {before} -> {load()}")
            print(f"    plain DataLoader loop  : {plain:8.1f} img/s")
            if args.freeze_backbone:
                print(f"    synthmix, per batch    : {per_batch:8.1f} img/s  ({per_batch / plain:.2f}x)")
                print(f"    synthmix, cached feats : {ours:8.1f} img/s  ({ours / per_batch:.2f}x over per batch)")
            else:
                print(f"    synthmix (end to end)  : {ours:8.1f} img/s  (includes decoding, val each epoch, checkpoint)")
            print(f"    ratio                  : {ours / plain:8.2f}x")
        if len(ratios) > 1:
            print(f"ratio over {len(ratios)} pairs: median {statistics.median(ratios):.2f}x, "
                  f"min {min(ratios):.2f}x, max {max(ratios):.2f}x")


if __name__ == "__main__":
    main()
