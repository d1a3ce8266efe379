"""The one way a stage runs: its command line is read off the stage function's signature, and
its params are the ones its dvc.yaml entry lists.

A stage function lives in the library next to the logic it drives::

    def train_stage(params: Params, mix: str, seed: int, *,
                    mix_manifest: Input, val: Input, classes: Input,
                    checkpoint: Output, metrics: Output) -> None: ...

and its script in ``stages/`` is two lines: import it, ``run_stage(train_stage)``. Parameters
after ``params`` become positional arguments (typed by their annotation: ``str`` or ``int``);
keyword-only ones become required ``--kebab-case`` options, :data:`~synthmix.core.paths.Input`
for paths the stage reads and :data:`~synthmix.core.paths.Output` for paths it writes. Paths
therefore appear once, in the stage's ``cmd`` in ``dvc.yaml``.

Under ``dvc repro`` (DVC sets ``DVC_STAGE``), the runner reads the stage's entry in dvc.yaml and

- loads and validates only the params sections the entry lists, and gives the function a
  :class:`~synthmix.config.loading.Params` that refuses to read any key not listed (so a missing
  ``params`` entry is an error naming the key, not a stage that silently does not re-run);
- refuses to run when a param names an existing local file or folder (weights, a data root) that
  is not one of the entry's deps, since DVC would not re-run the stage when that file changes;
- applies the ``threads`` param (torch and OpenMP threads), when listed, before any work.

Run by hand (no ``DVC_STAGE``), every section is validated and nothing is restricted.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import re
import sys
import time
import typing
from pathlib import Path
from typing import Any, Callable, Optional

from synthmix.core.errors import ParamsError, SynthmixError


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _hints(func: Callable) -> dict[str, Any]:
    """The evaluated annotations of a stage function (``Params`` may be a TYPE_CHECKING import there)."""
    from synthmix.config.loading import Params

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


# --------------------------------------------------------------------------------------------
# the stage's entry in dvc.yaml


def dvc_stage_entry(stage: str, root: Path) -> Optional[dict]:
    """The definition of stage ``stage`` (``name`` or ``name@item`` as in ``DVC_STAGE``) in
    ``root/dvc.yaml`` (``do`` block of a foreach stage), or None when it is not there."""
    import yaml

    path_part, _, name = stage.rpartition(":")
    dvc_yaml = root / (path_part or "dvc.yaml")
    if not dvc_yaml.is_file():
        return None
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    body = stages.get(name.split("@", 1)[0])
    if body is None:
        return None
    return body.get("do", body)


def listed_params(entry: dict, params_file: str = "params.yaml") -> list[str]:
    """The params keys a dvc.yaml entry lists for ``params_file``."""
    keys: list[str] = []
    for item in entry.get("params") or []:
        if isinstance(item, str):
            keys.append(item)
        elif isinstance(item, dict):
            for file, sub in item.items():
                if Path(file).name == Path(params_file).name:
                    keys += list(sub or [])
    return keys


_VAR = re.compile(r"\$\{\s*([A-Za-z0-9_.]+)\s*\}")


def _interpolate(text: str, raw: dict) -> Optional[str]:
    """``${section.key}`` filled from params.yaml; None when a variable is not a params key
    (``${item.x}`` of a matrix stage: a data path, never a file param)."""
    def value(m: re.Match) -> str:
        node: Any = raw
        for part in m.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(m.group(1))
            node = node[part]
        return str(node)

    try:
        return _VAR.sub(value, text)
    except KeyError:
        return None


def declared_deps(entry: dict, raw: dict) -> list[str]:
    out = []
    for dep in entry.get("deps") or []:
        path = _interpolate(str(dep), raw)
        if path is not None:
            out.append(os.path.normpath(path))
    return out


def file_params(params, listed: list[str]) -> list[tuple[str, str]]:
    """``(key, value)`` of every listed param marked :class:`~synthmix.config.base.FileParam`
    whose value names an existing local path (keywords and hub ids name none)."""
    from pydantic import BaseModel

    from synthmix.config.base import FileParam

    found: list[tuple[str, str]] = []

    def walk(value: Any, key: str, marker: Optional[FileParam]) -> None:
        if marker is not None and isinstance(value, str):
            if value not in marker.keywords and Path(value).expanduser().exists():
                found.append((key, value))
            return
        if isinstance(value, BaseModel):
            for name, field in type(value).model_fields.items():
                mark = next((m for m in field.metadata if isinstance(m, FileParam)), None)
                walk(getattr(value, name), f"{key}.{name}", mark)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{key}[{i}]", marker)

    for key in listed:
        section, _, rest = key.partition(".")
        node: Any = params._values.get(section)
        for part in rest.split(".") if rest else ():
            node = getattr(node, part, None)
        walk(node, key, None)
    return found


def untracked_file_params(params, listed: list[str], deps: list[str], stage: str) -> list[str]:
    """Problems: listed file params whose path is not (inside) one of the stage's deps."""
    problems = []
    for key, value in file_params(params, listed):
        path = os.path.normpath(os.path.expanduser(value))
        if any(path == d or path.startswith(d.rstrip(os.sep) + os.sep) for d in deps):
            continue
        problems.append(
            f"{key} = {value!r} names a file the stage reads, but it is not one of stage {stage}'s deps in "
            f"dvc.yaml, so a new version of it would not re-run the stage: add `- {value}` under the stage's "
            "deps (a file outside the repository works for you alone; to share it through the DVC remote, "
            "copy it into the repository, e.g. models/external/, run `dvc add` on it and list that path)"
        )
    return problems


def apply_threads(n: int) -> None:
    """``threads`` param: torch intra-op threads and the OpenMP/BLAS pools (0 = library defaults)."""
    if n <= 0:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)


def stage_params(params_path: str | Path):
    """The params of the running stage: restricted to its dvc.yaml entry under ``dvc repro``."""
    from synthmix.config.loading import AUDIT_ENV, audit_params, load_params, read_params_file, validate_params

    stage = os.environ.get("DVC_STAGE")
    # the stage's wdir (the repository root for this project's dvc.yaml); DVC_ROOT is not used:
    # queued experiments run in a temporary copy while DVC_ROOT names the parent repository
    entry = dvc_stage_entry(stage, Path.cwd()) if stage else None
    if entry is None:
        params = load_params(params_path)
        listed = params.sections()
    else:
        raw = read_params_file(params_path)
        listed = listed_params(entry, str(params_path))
        if os.environ.get(AUDIT_ENV):  # list every unlisted read of a graph in one run (tests/params_audit)
            params = audit_params(raw, str(params_path), listed, stage)
        else:
            params = validate_params(raw, str(params_path), listed, stage)
        problems = untracked_file_params(params, listed, declared_deps(entry, raw), stage)
        if problems:
            raise ParamsError("\n".join(problems))
    if "threads" in listed:
        apply_threads(params.threads)
    return params


def run_stage(func: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Parse the command line, load params, run the stage; a SynthmixError prints its message
    (no traceback) and exits 2."""
    setup_logging()
    args = vars(stage_parser(func).parse_args(argv))
    start, start_wall = time.perf_counter(), time.time()
    try:
        params = stage_params(args.pop("params"))
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
