#!/usr/bin/env python
"""Run a study preset (presets/NAME.yaml) as a DVC experiment: dvc exp run -n NAME -S ...

    python scripts/preset.py --list
    python scripts/preset.py thesis-sd15-hyponet --print     # show the command only
    python scripts/preset.py thesis-sd15-hyponet              # run it (then: dvc exp show)
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from synthmix.config.presets import exp_run_command
from synthmix.core.errors import SynthmixError


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="preset name (a file presets/NAME.yaml)")
    ap.add_argument("--print", action="store_true", help="print the dvc command instead of running it")
    ap.add_argument("--list", action="store_true", help="list the presets")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--presets", default="presets")
    args, extra = ap.parse_known_args(argv)
    if args.list or not args.name:
        for name in sorted(p.stem for p in Path(args.presets).glob("*.yaml")):
            print(name)
        return
    cmd = exp_run_command(args.name, args.params, args.presets) + extra
    if args.print:
        print(shlex.join(cmd))
        return
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    try:  # not run_stage: this is no stage (its own options, no params loaded first)
        main()
    except SynthmixError as exc:  # a bad preset: the message, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
