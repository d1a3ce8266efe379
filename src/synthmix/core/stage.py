"""The one way a stage runs: its command line is read off the stage function's signature.

A stage function lives in the library next to the logic it drives::

    def train_stage(params: Params, mix: str, seed: int, *,
                    mix_manifest: Input, val: Input, classes: Input,
                    checkpoint: Output, metrics: Output) -> None: ...

and its script in ``stages/`` is two lines: import it, ``run_stage(train_stage)``. Parameters
after ``params`` become positional arguments (typed by their annotation: ``str`` or ``int``);
keyword-only ones become required ``--kebab-case`` options, :data:`Input` for paths the stage
reads and :data:`Output` for paths it writes. Paths therefore appear once, in the stage's
``cmd`` in ``dvc.yaml``; ``tests/test_dvc_graph.py`` checks each Input is one of the stage's
deps and each Output one of its outs, metrics or plots. ``--params`` (default ``params.yaml``)
is loaded and validated before the function runs.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any, Callable

from synthmix.core.errors import SynthmixError

Input = Annotated[Path, "input"]
Output = Annotated[Path, "output"]


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _hints(func: Callable) -> dict[str, Any]:
    """The evaluated annotations of a stage function (``Params`` may be a TYPE_CHECKING import there)."""
    from synthmix.config import Params

    return typing.get_type_hints(func, localns={"Params": Params}, include_extras=True)


def path_options(func: Callable) -> dict[str, str]:
    """``{"--option-name": "input" | "output"}`` for every path option of a stage function."""
    hints = _hints(func)
    out = {}
    for name, param in inspect.signature(func).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            meta = getattr(hints[name], "__metadata__", ())
            if meta and meta[0] in ("input", "output"):
                out["--" + name.replace("_", "-")] = meta[0]
    return out


def stage_parser(func: Callable) -> argparse.ArgumentParser:
    """The argparse parser of a stage function (see the module docstring)."""
    doc = inspect.getdoc(func) or ""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    hints = _hints(func)
    kinds = path_options(func)
    params = list(inspect.signature(func).parameters.items())
    for name, param in params[1:]:  # the first one receives the loaded params
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            flag = "--" + name.replace("_", "-")
            if flag not in kinds:
                raise TypeError(f"{func.__name__}: option {name} must be annotated Input or Output")
            parser.add_argument(flag, dest=name, type=Path, required=True, help=f"{kinds[flag]} path")
        else:
            parser.add_argument(name, type=hints.get(name, str))
    return parser


def run_stage(func: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Parse the command line, load params, run the stage; a SynthmixError prints its message
    (no traceback) and exits 2."""
    setup_logging()
    args = vars(stage_parser(func).parse_args(argv))
    start, start_wall = time.perf_counter(), time.time()
    try:
        from synthmix.config import load_params

        params = load_params(args.pop("params"))
        func(params, **args)
    except SynthmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a full disk outside the atomic writers (torch, safetensors, PIL...)
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from synthmix.core.errors import disk_full_message

        print(f"error: {disk_full_message(exc.filename, exc)}", file=sys.stderr)
        sys.exit(2)
    seconds = time.perf_counter() - start
    # the stage's whole time, beside its own timings (not hashed); one process of a torchrun only
    if args.get("metrics") is not None and os.environ.get("RANK", "0") == "0":
        from synthmix.core.timings import add_stage_seconds

        add_stage_seconds(args["metrics"], seconds, since=start_wall)
    logging.getLogger("synthmix").info("stage finished in %.1f s", seconds)
