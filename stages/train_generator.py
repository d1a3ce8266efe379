#!/usr/bin/env python
"""Stage train_generator: train the class-conditional DDPM (the offline generator) on the real train split.

With generate.backend sd/sdxl (pretrained weights) it only records the class list.
"""

from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.device import pick_device
from synthmix.generators import train_ddpm
from synthmix.params import load_params


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--train", default="data/real/train.jsonl", help="real train manifest")
    parser.add_argument("--classes", default="data/real/classes.json", help="class names and image mode")
    parser.add_argument("--out", default="models/generator", help="generator folder to write")
    parser.add_argument("--metrics", default="metrics/generator.json")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    all_params = load_params(args.params)
    params = all_params.train_generator
    backend = all_params.generate.backend
    if backend != "ddpm":  # pretrained text-to-image weights: nothing to train
        from synthmix.generators.stable_diffusion import record_pretrained_generator

        record_pretrained_generator(args.classes, args.out, backend)
        write_json(args.metrics, {"steps": 0, "trained": False, "backend": backend})
        print(f"generate.backend = {backend}: no generator training needed ({args.out}/generator.json)")
        return
    info = train_ddpm(params, args.train, args.classes, args.out, device=pick_device(args.device))
    keys = ("final_loss", "train_seconds", "images_per_s", "n_parameters", "train_images", "device")
    write_json(args.metrics, {"steps": params.steps, **{k: info[k] for k in keys}})
    print(f"generator: {args.out}, final loss {info['final_loss']:.4f}, {info['train_seconds']:.0f} s")


if __name__ == "__main__":
    run_stage(main)
