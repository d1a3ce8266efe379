"""What every stage script shares: logging setup and turning user errors into clear exits."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Callable

from .errors import SynthmixError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def stage_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a SynthmixError prints its message (no traceback) and exits 2."""
    setup_logging()
    start = time.perf_counter()
    try:
        main()
    except SynthmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.getLogger("synthmix").info("stage finished in %.1f s", time.perf_counter() - start)
