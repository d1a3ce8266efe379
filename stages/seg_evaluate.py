#!/usr/bin/env python
"""Stage seg_evaluate: mIoU and per-class IoU of one trained model on the real test split, and an
overlay picture (image | true mask | predicted mask | prediction over the image)."""

from pathlib import Path

import torch

from synthmix.atomic import read_json, write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device
from synthmix.params import load_params
from synthmix.segmentation.data import load_pairs_arrays, read_pairs
from synthmix.segmentation.metrics import IoUMeter, overlay_grid
from synthmix.segmentation.train import load_segmenter, predict, run_name


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("mix")
    parser.add_argument("model")
    parser.add_argument("seed", type=int)
    parser.add_argument("--real", default="data/seg/real")
    parser.add_argument("--models-dir", default="models/seg/runs")
    parser.add_argument("--metrics-dir", default="metrics/seg/eval")
    parser.add_argument("--overlay-dir", default="metrics/seg/overlay")
    args = parser.parse_args()
    params = load_params(args.params)
    p = params.seg_evaluate
    info = read_json(f"{args.real}/classes.json")
    run = run_name(args.mix, args.model, args.seed)
    device = pick_device(params.seg_train.device)
    model, state = load_segmenter(Path(args.models_dir) / f"{run}.pt", device)
    images, masks = load_pairs_arrays(read_pairs(f"{args.real}/test.jsonl"), info["image_size"])
    pred = predict(model, torch.from_numpy(images), device, p.batch_size)
    meter = IoUMeter(len(info["classes"]), info["ignore_index"])
    meter.update(pred, torch.from_numpy(masks))
    scores = meter.compute()
    metrics = {
        "mix": args.mix, "model": args.model, "seed": args.seed, "miou": round(scores["miou"], 6),
        "pixel_accuracy": round(scores["pixel_accuracy"], 6),
        "iou": [None if v is None else round(v, 6) for v in scores["iou"]],
        "iou_per_class": {c: None if v is None else round(v, 6) for c, v in zip(info["classes"], scores["iou"])},
        "n_test": len(images), "train_pairs": state["train_pairs"], "synthetic_pairs": state.get("synthetic_pairs"),
    }  # fmt: skip
    write_json(Path(args.metrics_dir) / f"{run}.json", metrics)
    n = min(p.overlay_count, len(images))
    overlay_grid(images[:n], masks[:n], pred[:n].numpy(), info["colors"], Path(args.overlay_dir) / f"{run}.png")
    print(f"{run}: mIoU {100 * scores['miou']:.2f} %")


if __name__ == "__main__":
    run_stage(main)
