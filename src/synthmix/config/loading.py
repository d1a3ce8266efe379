"""Reading and validating params.yaml, with errors that name the key, the value and what is allowed.

Every stage calls :func:`load_params` first. An error names the key, the bad value and what
is allowed, e.g. ``train.lr = -0.1: Input should be greater than 0``. Unknown keys are errors
too (a typo such as ``train.lrr`` would otherwise be silently ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import ValidationError

from synthmix.config.params import Params
from synthmix.core.errors import ParamsError


def _model_at(path) -> Any:
    """The schema class at ``path`` (section names, nested keys, list indices) below Params."""
    import typing

    model: Any = Params
    for part in path:
        if isinstance(part, int):  # a list item: the list's element type
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if args else model
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return model
        model = field.annotation
        while typing.get_origin(model) is Union:  # Optional[X] -> X
            model = next(a for a in typing.get_args(model) if a is not type(None))
    return model


def _format_errors(exc: ValidationError, raw: dict, source: str) -> str:
    lines = [f"{source} is not valid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            model = _model_at(err["loc"][:-1])  # the (nested) section that has no such key
            allowed = ", ".join(getattr(model, "model_fields", {}))
            lines.append(f"  {loc}: unknown key (allowed: {allowed})")
            continue
        if err["type"] == "missing":
            lines.append(f"  {loc}: required key is missing")
            continue
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        msg = err["msg"].removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if "expected" in ctx:
            msg = f"{msg} (allowed: {ctx['expected']})"
        lines.append(f"  {loc or '(top level)'}{shown}: {msg}")
    return "\n".join(lines)


def validate_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_errors(exc, raw, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stage from the repository root")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return validate_params(raw, str(path))
