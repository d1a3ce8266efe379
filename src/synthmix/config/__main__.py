"""``python -m synthmix.config check [PARAMS]``: validate every section of a params file and every
rule that spans sections; exit 2 with the list of problems."""

from __future__ import annotations

import argparse
import sys

from synthmix.config.loading import load_params
from synthmix.core.errors import ParamsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthmix.config", description=__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("params", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.params}: {len(params.sections())} sections valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
