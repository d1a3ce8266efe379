"""Study presets: named parameter overlays (presets/*.yaml) turned into one `dvc exp run -S ...`.

Why: reproducing a study or prompt strategy needs a dozen params (data source, classes,
model, scheduler, prompts, training recipe). A preset file holds them once; ``extends``
composes presets (``thesis-sd15-hyponet`` = thesis-base + model-sd15 + strategy-hyponet).
Applying a preset is an ordinary DVC experiment, so `dvc exp show` compares the strategies.
The merged params are validated with the same schema as params.yaml before DVC starts.

Preset file format::

    extends: [thesis-base, model-sd15]   # optional, applied first, in order
    params: {generate: {sd: {freeu: {enabled: true}}}}
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from synthmix.config.loading import Params, validate_params
from synthmix.core.errors import ParamsError


def load_preset(name: str, presets_dir: str | Path = "presets", _seen: tuple[str, ...] = ()) -> dict:
    """The merged ``params`` overlay of preset ``name`` (its ``extends`` first, then its own)."""
    path = Path(presets_dir) / f"{name}.yaml"
    if name in _seen:
        raise ParamsError(f"preset {name}: extends itself through {' -> '.join(_seen)}")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(presets_dir).glob("*.yaml")))
        raise ParamsError(f"preset {name!r} not found in {presets_dir} (known: {known})")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(doc) - {"extends", "params"}
    if unknown:
        raise ParamsError(f"{path}: unknown keys {sorted(unknown)} (allowed: extends, params)")
    merged: dict = {}
    for parent in doc.get("extends") or []:
        merged = deep_merge(merged, load_preset(parent, presets_dir, _seen + (name,)))
    return deep_merge(merged, doc.get("params") or {})


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_preset(params: dict, overlay: dict) -> Params:
    """params.yaml's dict with the overlay merged in, validated (ParamsError names bad keys)."""
    return validate_params(deep_merge(params, overlay), "params.yaml + preset")


def _hydra_value(v: Any) -> str:
    """A value in the override grammar DVC's ``-S`` uses (Hydra): quoted strings, [..], {k: v}."""
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if v is None or isinstance(v, (bool, int, float)):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_hydra_value(x)}" for k, x in v.items()) + "}"
    raise ParamsError(f"preset value {v!r} of type {type(v).__name__} cannot be passed to dvc exp run -S")


def overrides(overlay: dict, params: dict, prefix: str = "") -> list[str]:
    """``-S`` arguments: one per leaf; mappings that are empty in params.yaml are set whole (``++``)."""
    out = []
    for key, value in overlay.items():
        full = f"{prefix}{key}"
        current = params.get(key) if isinstance(params, dict) else None
        if isinstance(value, dict) and isinstance(current, dict) and current:
            out += overrides(value, current, full + ".")
        else:
            out.append(f"++{full}={_hydra_value(value)}")
    return out


def exp_run_command(name: str, params_path: str | Path = "params.yaml", presets_dir: str | Path = "presets") -> list[str]:
    """The validated ``dvc exp run -n NAME -S ...`` command line of a preset."""
    params = yaml.safe_load(Path(params_path).read_text(encoding="utf-8"))
    overlay = load_preset(name, presets_dir)
    apply_preset(params, overlay)
    cmd = ["dvc", "exp", "run", "-n", name]
    for ov in overrides(overlay, params):
        cmd += ["-S", ov]
    return cmd
