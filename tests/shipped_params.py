"""Params sections with the values params.yaml ships, for unit tests.

params.yaml is the one place of every default (the schema requires each key it sets), so a
test that needs "the default fidelity settings but 20 KID subsets" asks for
``section("fidelity", kid_subsets=20)``.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

from synthmix.config.loading import schema_of

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


@lru_cache(maxsize=1)
def shipped() -> dict:
    return yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))


def section(path: str, **overrides):
    """The validated section at dotted ``path`` (e.g. ``generate.prompt``) with ``overrides`` applied."""
    keys = path.split(".")
    raw = copy.deepcopy(shipped())[keys[0]]
    model = schema_of(keys[0])
    for key in keys[1:]:
        raw = raw[key]
        model = model.model_fields[key].annotation
    return model.model_validate(_merge(raw, overrides))


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; nested mappings merge key by key (``sd={"steps": 2}``)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and v else v
    return out
