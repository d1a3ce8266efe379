"""The output folders of the personalization stages, as ``generate`` reads them.

``models/lora/index.json`` and ``models/textual_inversion/index.json`` say what was trained,
for which backend and model (its weights hash), and where each file is::

    {"format": "synthmix-lora/1", "backend": "sd", "model": ..., "model_sha256": ...,
     "scope": "per_class", "trained": [{"class": "cat", "file": "cat.safetensors", "sha256": ...}, ...]}
    {"format": "synthmix-textual-inversion/1", "backend": "sd", ...,
     "trained": [{"class": "cat", "token": "<cat>", "num_vectors": 4,
                  "file": "cat/learned_embeds.safetensors", "sha256": ...}, ...]}

A stage that had nothing to train (``generate.backend: ddpm``, or the generate flag that uses
its output is off) writes only the index, with ``"trained": []`` and the reason: no fake
weights. A shared LoRA has ``"class": null``. Only json/hashlib here: the SD backend imports
this module before it loads any weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from synthmix.core.errors import DataError
from synthmix.data.manifest import file_sha256

INDEX = "index.json"
LORA_FORMAT = "synthmix-lora/1"
TI_FORMAT = "synthmix-textual-inversion/1"
SHARED_LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default name: load_lora_weights(folder)
TI_FILE = "learned_embeds.safetensors"


def class_token(label: str) -> str:
    """The placeholder token of a class: ``<cat>``, ``<t_shirt_top>``."""
    return f"<{label}>"


def vector_tokens(token: str, n: int) -> list[str]:
    """The tokens of an n-vector embedding as diffusers names them: <cat>, <cat>_1, ..."""
    return [token] + [f"{token}_{i}" for i in range(1, n)]


def skip_index(fmt: str, backend: str, reason: str) -> dict:
    return {"format": fmt, "backend": backend, "trained": [], "reason": reason}


@dataclass(frozen=True)
class TrainedLora:
    path: Path
    sha256: str
    classes: tuple[str, ...]  # () = every class


@dataclass(frozen=True)
class TrainedEmbedding:
    label: str
    token: str
    num_vectors: int
    path: Path
    sha256: str

    def record(self) -> dict:
        """What a manifest line records (file hash included)."""
        return {"token": self.token, "num_vectors": self.num_vectors, "path": str(self.path), "sha256": self.sha256}


def read_index(folder: str | os.PathLike, fmt: str, family: str, model_sha256: str | None, key: str,
               stage: str) -> dict:
    """The checked index of a personalization folder for backend ``family`` and these weights."""
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{key} = true but {path} is missing or unreadable ({exc}): run dvc repro {stage}") from exc
    if index.get("format") != fmt:
        raise DataError(f"{path}: format {index.get('format')!r}, expected {fmt!r}: re-run dvc repro {stage}")
    if not index.get("trained"):
        raise DataError(f"{key} = true but {path} lists no trained adapters "
                        f"({index.get('reason', 'no reason given')}): run dvc repro {stage}")
    if index.get("backend") != family:
        raise DataError(f"{path} was trained for backend {index.get('backend')!r}, generate uses {family!r}: "
                        f"run dvc repro {stage}")
    if model_sha256 is not None:
        check_model(folder, model_sha256, key, stage)
    return index


def _checked_file(folder: Path, rec: dict, stage: str) -> tuple[Path, str]:
    path = folder / rec["file"]
    if not path.is_file():
        raise DataError(f"{path} (listed in {folder / INDEX}) is missing: run dvc repro {stage}")
    digest = file_sha256(path)
    if digest != rec.get("sha256"):
        raise DataError(f"{path} does not match the sha256 in {folder / INDEX}: run dvc repro {stage}")
    return path, digest


def trained_loras(folder: str | os.PathLike, family: str, model_sha256: str | None = None) -> list[TrainedLora]:
    """The LoRAs of the train_lora stage: one shared (every class) or one per class."""
    folder = Path(folder)
    index = read_index(folder, LORA_FORMAT, family, model_sha256, "generate.sd.trained_lora", "train_lora")
    out = []
    for rec in index["trained"]:
        path, digest = _checked_file(folder, rec, "train_lora")
        out.append(TrainedLora(path, digest, () if rec.get("class") is None else (str(rec["class"]),)))
    return out


def trained_embeddings(folder: str | os.PathLike, family: str,
                       model_sha256: str | None = None) -> dict[str, TrainedEmbedding]:
    """Class -> its learned token of the train_textual_inversion stage."""
    folder = Path(folder)
    index = read_index(folder, TI_FORMAT, family, model_sha256, "generate.sd.textual_inversion",
                       "train_textual_inversion")
    out = {}
    for rec in index["trained"]:
        path, digest = _checked_file(folder, rec, "train_textual_inversion")
        label = str(rec["class"])
        out[label] = TrainedEmbedding(label, rec["token"], int(rec["num_vectors"]), path, digest)
    return out


def check_model(folder: str | os.PathLike, model_sha256: str, key: str, stage: str) -> None:
    """Fail when ``folder``'s adapters were trained on other weights than ``model_sha256``."""
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{key} = true but {path} is missing or unreadable ({exc}): run dvc repro {stage}") from exc
    if index.get("model_sha256") != model_sha256:
        raise DataError(f"{path}: trained on weights {str(index.get('model_sha256'))[:12]}, but generate.sd.model's "
                        f"weights are {model_sha256[:12]}: run dvc repro {stage}")


def load_embeddings_into(pipe, family: str, path: str | os.PathLike, token: str) -> None:
    """``load_textual_inversion`` of a file of the train_textual_inversion stage (SDXL: both encoders)."""
    if family == "sd":
        pipe.load_textual_inversion(str(path), token=token)
        return
    from safetensors.torch import load_file

    state = load_file(str(path))
    pipe.load_textual_inversion(state["clip_l"], token=token, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token=token, text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
