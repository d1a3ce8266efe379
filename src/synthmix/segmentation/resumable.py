"""Image-by-image resumable generation for seg_generate_labels and seg_generate_images.

DVC deletes a stage's outputs before it re-runs the stage, so both stages fill a scratch folder
``<out's parent>/.partial/<stage>-<key>`` (:func:`synthmix.core.resume.scratch_dir`), ``key`` a
hash of everything that determines the files (model weights, params, seeds, inputs, device
type). Every file is written atomically; a re-run after a kill finds the folder, keeps the
finished files that decode, generates the rest, and finally the folder is moved into place.

Pixels are byte-identical to an uninterrupted run because work is always done in the same
*aligned blocks* ``[k * batch_size, (k + 1) * batch_size)``: each item has its own seed, and a
block with any missing item is recomputed whole (finished files in it are left untouched), so
no item is ever computed next to other batch-mates than in an uninterrupted run. Convolutions
may round differently for another batch composition (``render`` of one image alone can differ
by one grey level on some kernels); aligned blocks rule that out.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image, UnidentifiedImageError

from synthmix.core.atomic import replace_dir
from synthmix.core.resume import remove_superseded

log = logging.getLogger(__name__)


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
    a killed write, files of items this run does not make); returns how many were removed."""
    keep, removed = {Path(p) for p in keep}, 0
    for folder in folders:
        root = scratch / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), reverse=True):
            if (path.is_file() or path.is_symlink()) and path not in keep:
                path.unlink()
                removed += 1
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
