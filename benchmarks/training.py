#!/usr/bin/env python
"""Classifier-training throughput: synthmix's in-memory path vs a plain PyTorch DataLoader loop.

Both train the same torchvision ResNet-18 on the same PNG files for the same number of
epochs, in this process, on this machine (CUDA when present). The baseline is the usual
recipe: a Dataset that opens each PNG with PIL, resizes it bicubically and converts it to a
tensor every epoch, fed by a DataLoader. synthmix decodes once into a uint8 tensor and
slices batches from it (src/synthmix/classify/train.py).

    python benchmarks/training.py [--images-per-class 225] [--epochs 3] [--input-size 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from synthmix.classify.train import train_classifier
from synthmix.config.classify import TrainParams
from synthmix.data.manifest import file_sha256


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


def plain_loop(recs, classes, size, epochs, batch_size, device) -> float:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(classes)).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loader = torch.utils.data.DataLoader(PlainDataset(recs, classes, size), batch_size=batch_size, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(recs) * epochs / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--images-per-class", type=int, default=225)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=32)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classes = [f"c{c}" for c in range(args.classes)]
    with tempfile.TemporaryDirectory() as tmp:
        recs = make_pngs(Path(tmp), args.classes, args.images_per_class)
        val = recs[:: max(1, len(recs) // 64)]
        baseline = plain_loop(recs, classes, args.input_size, args.epochs, args.batch_size, device)
        params = TrainParams(seeds=[0], epochs=args.epochs, batch_size=args.batch_size, input_size=args.input_size)
        start = time.perf_counter()
        train_classifier(params, 0, recs, val, classes, Path(tmp) / "m.pt")
        ours = len(recs) * args.epochs / (time.perf_counter() - start)
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'})")
    print(f"{len(recs)} images, {args.epochs} epochs, batch {args.batch_size}, {args.input_size} px")
    print(f"plain DataLoader loop : {baseline:8.1f} img/s")
    print(f"synthmix (end to end) : {ours:8.1f} img/s  (includes decoding, val each epoch, checkpoint)")
    print(f"ratio                 : {ours / baseline:8.2f}x")


if __name__ == "__main__":
    main()
