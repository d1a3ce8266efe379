"""Resumable work: the scratch folders of interrupted stages, training checkpoints and
image-by-image outputs, in one toolkit for every stage that must survive a kill.

DVC deletes a stage's outputs before it re-runs the stage, so a stage that should survive a
kill works in ``<out's parent>/.partial/<stage>-<key>/`` (:func:`scratch_dir`), ``key`` a hash of
everything that determines the result (:func:`run_key`): a re-run with the same inputs finds
the folder and resumes, a run with other inputs gets another folder.

- Training: :class:`StepCheckpoints` keeps the newest ``step-XXXXXXXX`` checkpoint folder of a run
  (:mod:`synthmix.core.checkpoint`: tensors as safetensors, the rest as JSON; never a pickle);
  :class:`Checkpoints` adds the optimizer, lr scheduler, grad scaler and RNG states, so a resumed
  run ends with the same weights as an uninterrupted one (on the CPU bit for bit).
- Image sets (generate, the label DDPM, SPADE): every file is written atomically; a re-run keeps
  the finished files that decode (:func:`image_ok`) and makes the rest in the same aligned
  blocks (:func:`blocks_to_run`), so no item is computed beside other batch-mates than in an
  uninterrupted run; :func:`prune` drops stray files and :func:`move_into_place` renames the
  finished folder to the output.
- :func:`finish_scratch` / :func:`move_into_place` also remove the stage's superseded folders
  (runs whose params changed before they finished), then the scratch root if empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from PIL import Image, UnidentifiedImageError

from synthmix.core.atomic import replace_dir
from synthmix.core.checkpoint import META, load_checkpoint, prefixed, save_checkpoint

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _json_safe(obj):
    """Tuples as lists; raises on what JSON cannot hold (never pickled)."""
    return json.loads(json.dumps(obj))


class StepCheckpoints:
    """The newest checkpoint of one run, ``root/step-XXXXXXXX/``, every ``every`` steps: a
    checkpoint folder of :mod:`synthmix.core.checkpoint` (tensors.safetensors + meta.json, written
    atomically); saving one removes the older ones."""

    def __init__(self, root: Path, every: int, stage: str, fmt: str):
        self.root, self.every, self.stage, self.format = Path(root), every, stage, fmt

    def due(self, step: int, total: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < total

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir() and (p / META).is_file())
        return done[-1] if done else None

    def write(self, step: int, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
        target = self.root / f"step-{step:08d}"
        save_checkpoint(target, tensors, {"format": self.format, "step": step, **meta})
        for old in self.root.glob("step-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
        return load_checkpoint(path, self.format, self.stage)


class Checkpoints(StepCheckpoints):
    """:class:`StepCheckpoints` of a run with one optimizer: the trainable tensors (``weights/``),
    the optimizer state (``optimizer/``) and the RNG states (``rng/``); step, lr scheduler, grad
    scaler and the caller's extra record in the JSON."""

    FORMAT = "synthmix-adapter-checkpoint/1"

    def __init__(self, root: Path, every: int, stage: str = "train_lora", fmt: str | None = None):
        super().__init__(root, every, stage, fmt or self.FORMAT)

    def save(self, step: int, tensors: dict[str, torch.Tensor], optimizer, lr_scheduler, g: torch.Generator,
             extra: dict, scaler=None) -> None:
        import torch

        opt_tensors, opt_meta = _split_optimizer_state(optimizer.state_dict())
        rng = {"generator": g.get_state(), "torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        self.write(step, {**prefixed("weights/", tensors), **prefixed("optimizer/", opt_tensors),
                          **prefixed("rng/", rng)}, {
            "optimizer": opt_meta,
            "lr_scheduler": _json_safe(lr_scheduler.state_dict()),
            "grad_scaler": _json_safe(scaler.state_dict()) if scaler is not None and scaler.is_enabled() else None,
            **_json_safe(extra),
        })

    def load(self, path: Path, optimizer, lr_scheduler, g: torch.Generator, scaler=None) -> tuple[int, dict, dict]:
        import torch

        tensors, state = self.read(path)
        part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        optimizer.load_state_dict(_join_optimizer_state(part("optimizer/"), state["optimizer"]))
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        rng = part("rng/")
        g.set_state(rng["generator"])
        torch.set_rng_state(rng["torch_cpu"])
        if torch.cuda.is_available():
            states = [rng[f"cuda_{i}"] for i in range(torch.cuda.device_count()) if f"cuda_{i}" in rng]
            if states:
                torch.cuda.set_rng_state_all(states)
        return int(state["step"]), part("weights/"), state


def _split_optimizer_state(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    import torch

    tensors, state = {}, {}
    for pid, entry in sd["state"].items():
        out = {}
        for k, v in entry.items():
            if torch.is_tensor(v):
                name = f"{pid}/{k}"
                tensors[name] = v.detach().cpu().contiguous().clone()
                out[k] = {"tensor": name}
            else:
                out[k] = {"value": _json_safe(v)}
        state[str(pid)] = out
    return tensors, {"state": state, "param_groups": _json_safe(sd["param_groups"])}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def run_key(parts: dict) -> str:
    """12 hex digits over everything that determines a stage's result (the scratch folder name)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:12]


def scratch_dir(out: Path, stage: str, key: str, scratch_root: Path | None = None) -> Path:
    """``<out's parent>/.partial/<stage>-<key>`` (models/.partial/train_lora-...), kept across runs
    until the stage finishes: DVC removes a stage's outputs before re-running it."""
    root = Path(scratch_root) if scratch_root is not None else Path(out).parent / ".partial"
    return root / f"{stage}-{key}"


def remove_superseded(root: Path, prefix: str, keep: Path | None = None) -> list[str]:
    """Remove the folders ``root/<prefix>*`` but ``keep``: scratch of runs whose inputs changed
    before they finished, which no later run resumes. Returns the removed folders' names."""
    removed = []
    for old in sorted(Path(root).glob(f"{prefix}*")):
        if old.is_dir() and not old.is_symlink() and old != keep:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old.name)
    return removed


def finish_scratch(scratch: Path) -> list[str]:
    """Remove a finished stage's scratch folder and the stage's superseded ones (same
    ``<stage>-`` prefix, other key), then the scratch root if empty; returns the superseded names."""
    scratch = Path(scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    removed = remove_superseded(scratch.parent, scratch.name.rsplit("-", 1)[0] + "-", keep=scratch)
    try:
        scratch.parent.rmdir()
    except OSError:
        pass
    return removed


# ---- image sets made item by item ----------------------------------------------------


def image_ok(path: Path, size: tuple[int, int], mode: str) -> bool:
    """True if ``path`` is a complete image of ``size`` (w, h) and ``mode``."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.size == size and im.mode == mode
    except (FileNotFoundError, UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def blocks_to_run(n: int, batch_size: int, done: Sequence[bool]) -> list[range]:
    """The aligned blocks of ``range(n)`` that hold at least one unfinished position."""
    return [range(lo, min(n, lo + batch_size)) for lo in range(0, n, batch_size)
            if not all(done[lo : lo + batch_size])]  # fmt: skip


def prune(scratch: Path, keep: Iterable[Path], folders: Sequence[str]) -> int:
    """Delete everything under ``scratch/<folder>`` that is not in ``keep`` (temporary files of
    a killed write, files of items this run does not make) and the folders left empty; returns
    how many files were removed."""
    keep, removed = {Path(p) for p in keep}, 0
    for folder in folders:
        root = scratch / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), reverse=True):
            if path.is_file() or path.is_symlink():
                if path not in keep:
                    path.unlink()
                    removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return removed


def move_into_place(scratch: Path, out: Path) -> list[str]:
    """Move the finished scratch folder to ``out``; remove the stage's superseded scratch folders
    (same ``<stage>-`` prefix: runs whose inputs changed before they finished) and the scratch
    root if it is then empty. Returns the superseded folders' names."""
    replace_dir(scratch, out)
    removed = remove_superseded(scratch.parent, scratch.name.rsplit("-", 1)[0] + "-")
    if removed:
        log.info("removed superseded scratch folder(s) %s", ", ".join(removed))
    try:
        scratch.parent.rmdir()
    except OSError:
        pass
    return removed
