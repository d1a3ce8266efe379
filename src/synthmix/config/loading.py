"""Reading and validating params.yaml, section by section, with errors that name the key, the
value and what is allowed (``train.lr = -0.1: Input should be greater than 0``).

A stage validates only the sections it reads: :func:`load_params` with ``keys`` (the stage's
``params`` list in dvc.yaml, e.g. ``["train", "prepare.classes", "device"]``) imports the schema
modules of those sections alone (:mod:`synthmix.config.sections`), so a typo in a ``seg_*`` key
does not stop ``prepare`` and a change to the segmentation schema re-runs no classification
stage. The :class:`Params` it returns refuses to read a key outside ``keys``, naming the key and
the fix, so a stage's ``params`` list cannot miss what the stage reads. Without ``keys`` every
section is validated (``python -m synthmix.config check``, presets, tests). Unknown top-level keys
are errors everywhere; unknown keys inside a section are errors where that section is loaded.
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Optional, Union

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from synthmix.core.errors import ParamsError

SECTIONS_PACKAGE = "synthmix.config.sections"


def section_names() -> list[str]:
    """Every top-level key params.yaml may hold: the modules of :mod:`synthmix.config.sections`
    (read off the folder; nothing is imported)."""
    package = importlib.import_module(SECTIONS_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def section_module(name: str) -> ModuleType:
    """The schema module of top-level key ``name`` (``SCHEMA`` and optional ``CHECKS``)."""
    if name not in section_names():
        raise ParamsError(f"params.yaml has no section {name!r} (known: {', '.join(section_names())})")
    return importlib.import_module(f"{SECTIONS_PACKAGE}.{name}")


def _model_at(model: Any, path: Iterable[Union[str, int]]) -> Any:
    """The schema class at ``path`` (nested keys, list indices) below ``model``."""
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


def _error_lines(exc: ValidationError, section: str, schema: Any) -> list[str]:
    lines = []
    for err in exc.errors():
        loc_parts = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "constrained-")))]
        loc = ".".join(str(p) for p in [section, *loc_parts])
        if err["type"] == "extra_forbidden":
            model = _model_at(schema, loc_parts[:-1])  # the (nested) section that has no such key
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
        lines.append(f"  {loc}{shown}: {msg}")
    return lines


class _Namespace:
    """Validated sections as attributes (what cross-section checks see)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)


class Params:
    """The validated params a stage reads, section by section as attributes (``params.train.lr``).

    ``allowed`` maps each loaded section to None (the whole section may be read) or to the keys
    below it that may be (``{"classes"}`` when the stage lists ``prepare.classes``). Reading
    anything else raises a ParamsError naming the key and telling to list it in dvc.yaml.
    """

    def __init__(self, values: dict[str, Any], allowed: Optional[dict[str, Optional[set[str]]]] = None,
                 stage: Optional[str] = None):
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_stage", stage)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        values, allowed, stage = self._values, self._allowed, self._stage
        if allowed is not None and name not in allowed:
            _unlisted(stage, name)  # raises, unless auditing (then every section is loaded)
        if name not in values:
            raise ParamsError(f"params has no section {name!r}")
        keys = None if allowed is None else allowed.get(name)
        value = values[name]
        return value if keys is None else _KeyView(value, name, keys, stage)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("params are read-only")

    def sections(self) -> list[str]:
        return list(self._values)


def unlisted_message(stage: Optional[str], key: str) -> str:
    return (f"stage {stage} reads params key {key!r}, which dvc.yaml does not list under the stage's params: "
            f"add `- {key}` there, so that a change to it re-runs the stage")


AUDIT_ENV = "SYNTHMIX_PARAMS_AUDIT"


def _unlisted(stage: Optional[str], key: str) -> None:
    """Raise for an unlisted read; with ``$SYNTHMIX_PARAMS_AUDIT`` set to a file, append the key
    there and go on instead (to list every missing key of a graph in one run)."""
    import os

    audit = os.environ.get(AUDIT_ENV)
    if not audit:
        raise ParamsError(unlisted_message(stage, key))
    with open(audit, "a", encoding="utf-8") as fh:
        fh.write(f"{stage}\t{key}\n")


class _KeyView:
    """A section of which the stage may read only some keys (``prepare.classes``)."""

    def __init__(self, value: Any, prefix: str, keys: set[str], stage: Optional[str]):
        self._value, self._prefix, self._keys, self._stage = value, prefix, keys, stage

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._keys:
            return getattr(self._value, name)
        deeper = {k.split(".", 1)[1] for k in self._keys if k.startswith(name + ".")}
        if deeper:
            return _KeyView(getattr(self._value, name), f"{self._prefix}.{name}", deeper, self._stage)
        _unlisted(self._stage, f"{self._prefix}.{name}")
        return getattr(self._value, name)  # audit mode only: the value, recorded as unlisted

    def model_dump(self, *args, **kwargs) -> Any:
        _unlisted(self._stage, self._prefix)
        return self._value.model_dump(*args, **kwargs)

    def model_copy(self, *, update: Optional[dict[str, Any]] = None, deep: bool = False) -> "_KeyView":
        """A copy with ``update`` applied, still limited to the listed keys (plus the updated ones,
        which the stage sets itself rather than reads from params.yaml)."""
        copy = self._value.model_copy(update=update, deep=deep)
        return _KeyView(copy, self._prefix, self._keys | set(update or ()), self._stage)


def _allowed_keys(keys: Iterable[str]) -> dict[str, Optional[set[str]]]:
    allowed: dict[str, Optional[set[str]]] = {}
    for key in keys:
        section, _, rest = key.partition(".")
        if not rest:
            allowed[section] = None
        elif allowed.get(section, set()) is not None:
            allowed.setdefault(section, set()).add(rest)
    return allowed


def validate_params(raw: Any, source: str = "params.yaml", keys: Optional[Iterable[str]] = None,
                    stage: Optional[str] = None) -> Params:
    """Validate ``raw`` (params.yaml's mapping): the sections named in ``keys`` (``section`` or
    ``section.key``), or every section when ``keys`` is None; then every cross-section check whose
    sections are all loaded. One ParamsError lists every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source} must be a mapping of sections, got {type(raw).__name__}")
    known = section_names()
    lines = [f"  {k}: unknown section (allowed: {', '.join(known)})" for k in raw if k not in known]
    allowed = None if keys is None else _allowed_keys(keys)
    wanted = known if allowed is None else sorted(allowed)
    values, modules = {}, []
    for name in wanted:
        module = section_module(name)
        modules.append(module)
        if name not in raw:
            lines.append(f"  {name}: required key is missing")
            continue
        try:
            values[name] = TypeAdapter(module.SCHEMA).validate_python(raw[name])
        except ValidationError as exc:
            lines += _error_lines(exc, name, module.SCHEMA)
    if not lines:
        view = _Namespace(values)
        for module in modules:
            for rule in getattr(module, "CHECKS", ()):
                if set(rule.sections) <= set(values):
                    try:
                        rule.func(view)
                    except ValueError as exc:
                        lines.append(f"  {' / '.join(rule.sections)}: {exc}")
    if lines:
        raise ParamsError("\n".join([f"{source} is not valid:", *dict.fromkeys(lines)]))
    return Params(values, allowed, stage)


def read_params_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run the stage from the repository root")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return raw


def load_params(path: str | Path = "params.yaml", keys: Optional[Iterable[str]] = None,
                stage: Optional[str] = None) -> Params:
    """params.yaml validated: the sections of ``keys`` only (a stage), or all of them."""
    return validate_params(read_params_file(path), str(path), keys, stage)


def audit_params(raw: dict, source: str, keys: Iterable[str], stage: Optional[str]) -> Params:
    """``$SYNTHMIX_PARAMS_AUDIT`` mode: every section loaded, reads outside ``keys`` recorded."""
    full = validate_params(raw, source)
    return Params(full._values, _allowed_keys(keys), stage)


def schema_of(section: str) -> type[BaseModel] | Any:
    return section_module(section).SCHEMA
