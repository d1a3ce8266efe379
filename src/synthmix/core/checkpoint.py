"""Checkpoints and feature files without pickle: tensors as safetensors, metadata as JSON.

A checkpoint is a folder of two files::

    tensors.safetensors   every tensor (a JSON header and raw little-endian bytes: reading it
                          never runs code, unlike ``torch.load`` of a pickle)
    meta.json             {"format": "<kind>/<version>", ...}: everything else, readable as text

:func:`save_checkpoint` fills a temporary sibling and renames it into place, so the folder is
always complete. :func:`load_checkpoint` reads only these two formats: anything else (an old
``.pt`` pickle, a pickle put in place of ``tensors.safetensors``, a wrong ``format``) raises
:class:`~synthmix.core.errors.DataError` naming the file and the stage to re-run; nothing is
ever unpickled. :func:`checkpoint_sha256` is the content hash other outputs record (e.g. the
SPADE checkpoint's in every synthetic pair): both files hold only what the stage's inputs
determine (timings, host and versions go to the stage's metrics file instead).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from synthmix.core.atomic import building_dir, write_json
from synthmix.core.errors import DataError, MissingAssetError

TENSORS = "tensors.safetensors"
META = "meta.json"


def _rerun(stage: str) -> str:
    return f"re-run the stage that writes it: dvc repro -f {stage}"


def save_checkpoint(folder: str | os.PathLike, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Write ``tensors`` (name -> torch tensor) and ``meta`` (JSON-able, with a ``format`` key)
    as the checkpoint folder ``folder``, atomically."""
    import torch
    from safetensors.torch import save_file

    if "format" not in meta:
        raise ValueError("checkpoint metadata needs a 'format' key")
    # safetensors refuses tensors that share memory or are not contiguous: store plain copies
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    if len(plain) != len(tensors):
        bad = sorted(k for k, v in tensors.items() if not isinstance(v, torch.Tensor))
        raise ValueError(f"not tensors: {bad}")
    with building_dir(folder) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        save_file(plain, str(tmp / TENSORS), metadata={"format": "pt"})
        write_json(tmp / META, dict(meta))


def read_meta(folder: str | os.PathLike, expect_format: str, stage: str) -> dict:
    """``meta.json`` of a checkpoint folder, checked: exists, is JSON, has ``expect_format``."""
    folder = Path(folder)
    if not folder.exists():
        raise MissingAssetError(f"{folder} not found: run the stage that writes it: dvc repro {stage}")
    if not folder.is_dir():
        raise DataError(
            f"{folder} is a file, not a checkpoint folder ({TENSORS} + {META}); an old pickle "
            f"checkpoint is never loaded: {_rerun(stage)}"
        )
    path = folder / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing: {_rerun(stage)}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): {_rerun(stage)}") from None
    if not isinstance(meta, dict) or meta.get("format") != expect_format:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{path}: format {got!r}, expected {expect_format!r}: {_rerun(stage)}")
    return meta


def load_checkpoint(folder: str | os.PathLike, expect_format: str, stage: str) -> tuple[dict, dict]:
    """(tensors on CPU, metadata) of a checkpoint folder written by :func:`save_checkpoint`.

    ``stage`` names the DVC stage that writes it, for the error messages ("dvc repro -f STAGE").
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(folder, expect_format, stage)
    path = Path(folder) / TENSORS
    if not path.is_file():
        raise DataError(f"{path} is missing: {_rerun(stage)}")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not a valid safetensors file ({exc}); it is not loaded: {_rerun(stage)}") from None
    return tensors, meta


def load_state(module, tensors: Mapping[str, Any], folder: str | os.PathLike, stage: str, prefix: str = "") -> None:
    """``module.load_state_dict`` from the ``prefix``-named tensors; a mismatch is a DataError."""
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise DataError(f"{Path(folder) / TENSORS} does not fit its architecture ({exc}): {_rerun(stage)}") from None


def prefixed(prefix: str, state: Mapping[str, Any]) -> dict:
    """``{prefix + name: tensor}``: several state dicts in one tensors file."""
    return {prefix + k: v for k, v in state.items()}


def checkpoint_sha256(folder: str | os.PathLike) -> str:
    """Content hash of a checkpoint folder: sha256 over both files' names and sha256s."""
    folder = Path(folder)
    lines = []
    for name in (META, TENSORS):
        h = hashlib.sha256()
        with open(folder / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{name} {h.hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
