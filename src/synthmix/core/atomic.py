"""Atomic writes: write to a temporary name in the same directory, then rename.

A reader (or a resumed run) therefore sees either the old file or the complete new one,
never a half-written file; :func:`building_dir` and :func:`replace_dir` do the same for folders.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from synthmix.core.errors import DataError, DiskFullError, disk_full_message

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

# Fixed PNG settings: Pillow's encoder is deterministic for a given zlib level.
PNG_OPTIONS = {"compress_level": 6, "optimize": False}


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise DiskFullError(disk_full_message(path, exc)) from exc
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_image(image, path: str | os.PathLike, **save_kwargs: Any) -> None:
    """Save a PIL image atomically; the format follows the file suffix."""
    path = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[path.suffix.lower()]
    with atomic_open(path, "wb") as fh:
        image.save(fh, format=fmt, **save_kwargs)


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist: run the stage that writes it (dvc repro)") from None


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished directory ``src`` to ``dst``, replacing any existing ``dst``.

    The old ``dst`` is renamed aside first, so ``dst`` is always either the complete old
    directory, absent (between two renames) or the complete new one.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    trash = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if trash.exists():
        shutil.rmtree(trash)
    moved_old = False
    if dst.exists() or dst.is_symlink():
        os.replace(dst, trash)
        moved_old = True
    try:
        try:
            os.replace(src, dst)
        except OSError:  # another filesystem: copy, then remove the source
            shutil.move(str(src), str(dst))
    except BaseException:
        if moved_old and not dst.exists():
            with contextlib.suppress(OSError):
                os.replace(trash, dst)
        raise
    if moved_old:
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                trash.unlink()


@contextlib.contextmanager
def building_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``out`` to fill; renamed over ``out`` on success, removed on error.

    A sibling keeps paths relative to the folder valid after the rename, and ``out`` is always
    either the complete old folder or the complete new one.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
