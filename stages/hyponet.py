#!/usr/bin/env python
"""Stage hyponet: per-class wildcard files of WordNet hyponyms from sample training images,
an ImageNet classifier and WordNet (the HypoNet prompt strategy), with a JSON report per class."""
from synthmix.atomic import write_json
from synthmix.cli import run_stage, stage_parser
from synthmix.hyponet import run_hyponet
from synthmix.params import load_params


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--manifest", default="data/real/train.jsonl", help="real training manifest")
    parser.add_argument("--wildcards", default="prompts/wildcards/hyponyms", help="one <class>.txt per class")
    parser.add_argument("--reports", default="metrics/hyponet", help="one <class>.json report per class")
    parser.add_argument("--metrics", default="metrics/hyponet.json", help="numeric summary (DVC metrics)")
    args = parser.parse_args()
    params = load_params(args.params)
    summary = run_hyponet(params.hyponet, params.prepare.classes, args.manifest, args.wildcards, args.reports)
    write_json(args.metrics, summary)


if __name__ == "__main__":
    run_stage(main)
