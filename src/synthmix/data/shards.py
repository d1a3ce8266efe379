"""Image sets stored as webdataset tar shards instead of loose files.

Why: DVC handles a few hundred large files quickly but hundreds of thousands of small ones
slowly (600k PNGs take hours to push or pull), so an image set can be stored as uncompressed
tar shards in the webdataset layout, readable by ``webdataset.WebDataset``, timm's wds reader
and, by random access, :func:`synthmix.data.images.load_rgb`.

Records. A sharded image's manifest record keeps its logical ``path`` (the value it would have
as a loose file, so mixes and per-image records do not depend on the storage mode) and gains
``shard`` (path of the tar file, relative to the project root) and ``key`` (the webdataset
key, e.g. ``coat/000012``; no dots, since webdataset splits a member name at its first dot).
``sha256`` stays the hash of the image bytes, identical to the loose file's.

Shard layout. Per image three adjacent members, images in the set's canonical order:
``<key>.<ext>`` (the image bytes; ``png`` for generated images, the loose file's suffix
otherwise), ``<key>.cls`` (the class index in the set's class list, ASCII decimal) and
``<key>.json`` (the manifest record without ``shard``: UTF-8 JSON, keys sorted, no spaces).
Shard ``i`` holds canonical positions ``[i * shard_size, (i + 1) * shard_size)`` and is named
``<prefix>-<i:06d>.tar``.

Deterministic bytes. Every header is fixed (PAX format, mtime 0, uid/gid 0, empty
uname/gname, mode 0o444), nothing is compressed and the member order follows the canonical
order, so a shard's bytes depend only on its images and records: never on time, user, batch
size, the order in which images arrived or how many processes wrote them.

API:

- :class:`ShardedSetWriter`: resumable, order-free, multi-process writing while a generator
  produces images (``add``, ``flush_complete``, ``finished_shards``, ``missing_positions``,
  ``close``);
- :func:`pack_manifest` / :func:`unpack_manifest`: loose files -> shards and back;
- :class:`ShardReader` (and :func:`read_image_bytes`): random access by (shard, key) through
  a cached per-shard member index; :func:`iter_shard`: sequential streaming of one shard.

Errors (a missing shard or key, a truncated tar, bytes that do not match the record's
sha256) raise :class:`DataError` naming the shard, the key and how to get the data back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, NamedTuple, Sequence

from synthmix.core.atomic import atomic_open, write_bytes
from synthmix.core.errors import DataError

TAR_FORMAT = tarfile.PAX_FORMAT  # USTAR headers, PAX extended headers only for long/non-ASCII names
MEMBER_MODE = 0o444
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tarfile pads an archive to a multiple of this
CLS, JSON = "cls", "json"
NAME_RE = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext
_EXT_RE = re.compile(r"^[a-z0-9]+$")
_BAD_KEY_CHARS = re.compile(r"[.\\\x00-\x1f\x7f]")


# --------------------------------------------------------------------------- names and checks


def shard_name(prefix: str, index: int) -> str:
    """File name of shard ``index``: ``<prefix>-<index:06d>.tar``."""
    return f"{prefix}-{index:06d}.tar"


def check_key(key: str) -> str:
    """``key`` if it is a valid webdataset key (no dots, backslashes or control characters,
    no empty path components), else DataError."""
    if not isinstance(key, str) or not key or _BAD_KEY_CHARS.search(key) or "" in key.split("/"):
        raise DataError(f"invalid shard key {key!r}: a key is a non-empty relative name such as 'coat/000012', "
                        "without dots (webdataset splits a member name at its first dot), backslashes, control "
                        "characters or empty path components; derive keys from file names with the suffix removed")
    return key


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "\\" in prefix or prefix.startswith("."):
        raise DataError(f"invalid shard prefix {prefix!r}: use a plain file-name stem such as 'train'")
    return prefix


def _image_ext(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lstrip(".").lower()
    ext = {"jpeg": "jpg", "tiff": "tif"}.get(ext, ext)  # the names webdataset and timm look for
    if not _EXT_RE.match(ext) or ext in (CLS, JSON):
        raise DataError(f"{path}: cannot store this image in a shard: its suffix {ext!r} is not an image "
                        "suffix (png, jpg, webp, ...); rename the file")
    return ext


def _logical_path(path, root: str | os.PathLike) -> str:
    """The record's ``path`` as stored in a shard: relative to ``root`` (the project root),
    POSIX separators, so shard bytes do not depend on where the project is checked out."""
    p = os.fspath(path)
    if os.path.isabs(p):
        rel = os.path.relpath(p, os.path.abspath(root))
        if rel == ".." or rel.startswith(".." + os.sep):
            raise DataError(f"image {p} lies outside the project root {os.path.abspath(root)}: pass root= the "
                            "folder that holds the data (shard records keep project-relative paths)")
        p = rel
    return Path(p).as_posix()


def _record_dir(record_dir, out_dir, root) -> str:
    """What a record's ``shard`` starts with: ``record_dir`` as given, else ``out_dir`` relative to ``root``."""
    if record_dir is not None:
        return Path(record_dir).as_posix()
    return _logical_path(os.path.abspath(out_dir), root)


def _record_json(record: Mapping) -> bytes:
    try:
        return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DataError(f"record of {record.get('path')!r} cannot be stored as JSON ({exc}): convert its fields "
                        "to plain str/int/float/bool/list/dict values") from exc


def _class_index(classes: Sequence[str], label, where: str) -> int:
    try:
        return list(classes).index(label)
    except ValueError:
        raise DataError(f"{where}: label {label!r} is not one of the set's classes {list(classes)}: pass the "
                        "class list the set was made with (classes.json)") from None


def restore_hint(shard: str | os.PathLike) -> str:
    """How to get a missing or damaged shard back."""
    from synthmix.data.images import _writing_stage

    stage, out = _writing_stage(shard, "dvc.yaml")
    if stage is not None:
        return (f"it belongs to {out}, the output of stage {stage}: restore it from the DVC cache with "
                f"`dvc checkout --force {out}`, or rebuild it with `dvc repro -f {stage}`")
    return ("restore it from the DVC cache with `dvc checkout --force <the output that holds it>`, or re-run "
            "the stage that wrote it (`dvc repro -f <stage>`; a set packed by hand: pack_manifest again)")


# --------------------------------------------------------------------------- writing tar files


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = MEMBER_MODE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


@dataclass(frozen=True)
class _Item:
    key: str
    ext: str
    image: bytes
    cls: int
    record: dict  # as stored in the .json member (with key, without shard)


def _write_shard(path: Path, items: Iterable[_Item]) -> None:
    """Write the members of ``items`` as one tar, atomically (temp name in the folder + rename)."""
    with atomic_open(path, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=TAR_FORMAT, encoding="utf-8") as tf:
            for item in items:
                for ext, data in ((item.ext, item.image), (CLS, str(item.cls).encode("ascii")),
                                  (JSON, _record_json(item.record))):
                    tf.addfile(_tarinfo(f"{item.key}.{ext}", len(data)), io.BytesIO(data))


def _stored(record: Mapping, key: str, root, where: str) -> dict:
    """The record as stored in the shard's .json member, but for ``sha256``: ``key`` set,
    ``shard`` dropped, ``path`` relative to ``root``."""
    for field in ("path", "label"):
        if field not in record:
            raise DataError(f"{where}: record is missing {field!r} (has: {', '.join(record)})")
    rec = {k: v for k, v in record.items() if k != "shard"}
    rec.update(path=_logical_path(record["path"], root), key=key)
    return rec


def _embedded(record: Mapping, key: str, image: bytes, root, where: str) -> dict:
    """:func:`_stored` with ``sha256`` checked against (or filled from) the image bytes."""
    rec = _stored(record, key, root, where)
    sha = hashlib.sha256(image).hexdigest()
    if record.get("sha256", sha) != sha:
        raise DataError(f"{where}: the image bytes' sha256 is {sha}, the record says {record['sha256']}: "
                        f"the file {record['path']} changed since its manifest was written; restore it (dvc "
                        "checkout) or re-run the stage that wrote it")
    rec["sha256"] = sha
    return rec


# --------------------------------------------------------------------------- reading tar files


class Member(NamedTuple):
    name: str
    key: str
    ext: str
    offset: int  # of the data
    size: int


class ShardIndex:
    """Where each member's data lies in one shard, compactly: a 600k-image set has ~2M members,
    and every DataLoader worker holds the index of every shard it reads.

    Per key (in file order) one row of ``spans``: offset and size of its image, .cls and .json
    members (-1 where absent); other members (unusual for this project's shards) in ``extra``.
    ``layout``: why the shard is not three adjacent members (image, .cls, .json) per key, or
    None. ``end``: the offset just past the last member's padded data."""

    __slots__ = ("path", "stamp", "end", "keys", "rows", "exts", "spans", "extra", "layout")

    def __init__(self, path: str, stamp: tuple):
        self.path, self.stamp, self.end = path, stamp, 0
        self.keys: list[str] = []
        self.rows: dict[str, int] = {}
        self.exts: list[str | None] = []  # image extension per row
        self.spans = array("q")
        self.extra: dict[tuple[str, str], tuple[int, int]] = {}
        self.layout: str | None = None

    def _add(self, key: str, ext: str, offset: int, size: int, position: int) -> None:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = len(self.keys)
            self.keys.append(key)
            self.exts.append(None)
            self.spans.extend((-1, -1, -1, -1, -1, -1))
        slot = 1 if ext == CLS else 2 if ext == JSON else 0
        if slot == 0 and self.exts[row] not in (None, ext):
            self.extra[(key, ext)] = (offset, size)  # a second image member
        elif self.spans[6 * row + 2 * slot] >= 0:
            self.layout = self.layout or f"the member {key}.{ext} occurs twice"
        else:
            if slot == 0:
                self.exts[row] = sys.intern(ext)
            self.spans[6 * row + 2 * slot:6 * row + 2 * slot + 2] = array("q", (offset, size))
        if self.layout is None:  # members 3r, 3r+1, 3r+2 must be key r's image, .cls, .json
            expected_slot, expected_row = position % 3, position // 3
            if row != expected_row or slot != expected_slot or (key, ext) in self.extra:
                self.layout = f"the member {key}.{ext} is out of place (three adjacent members per key: " \
                              "<image>, .cls, .json)"

    def __len__(self) -> int:
        return len(self.keys)

    def member(self, key: str, ext: str | None = None) -> Member | None:
        """The member ``<key>.<ext>``; ``ext=None``: the key's image member."""
        row = self.rows.get(key)
        if row is None:
            return None
        if ext is None:
            ext = self.exts[row]
            if ext is None:
                return None
        slot = 1 if ext == CLS else 2 if ext == JSON else 0
        if slot == 0 and ext != self.exts[row]:
            span = self.extra.get((key, ext))
            return Member(f"{key}.{ext}", key, ext, *span) if span else None
        offset, size = self.spans[6 * row + 2 * slot], self.spans[6 * row + 2 * slot + 1]
        return Member(f"{key}.{ext}", key, ext, offset, size) if offset >= 0 else None

    def image_member(self, key: str) -> Member | None:
        return self.member(key)


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _scan(fileobj, shown: str, stamp: tuple) -> ShardIndex:
    """Index a tar from its headers (the data is skipped); DataError if it is truncated/corrupt."""
    index = ShardIndex(shown, stamp)
    n = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tf:
            while (ti := tf.next()) is not None:
                tf.members.clear()  # tarfile keeps every TarInfo otherwise
                if not ti.isreg():
                    continue
                m = NAME_RE.match(ti.name)
                if m is None:
                    raise DataError(f"shard {shown} holds the member {ti.name!r}, which has no '<key>.<ext>' name: "
                                    f"not a webdataset shard of this project; {restore_hint(shown)}")
                index._add(m.group(1), m.group(2), ti.offset_data, ti.size, n)
                n += 1
                index.end = ti.offset_data + -(-ti.size // BLOCK) * BLOCK
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"shard {shown} is truncated or corrupt ({exc}); {restore_hint(shown)}") from exc
    if n % 3 and index.layout is None:
        index.layout = f"{n} members, not three per key (<image>, .cls, .json)"
    if stamp[2] < index.end + 2 * BLOCK:  # the last member's data, or the end-of-archive blocks, are cut off
        raise DataError(f"shard {shown} is truncated ({stamp[2]} bytes, its members need {index.end + 2 * BLOCK}); "
                        f"{restore_hint(shown)}")
    return index


def scan_shard(path: str | os.PathLike) -> ShardIndex:
    """Index one shard (no caching); DataError if it is missing, truncated or corrupt."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            return _scan(fh, shown, _stamp(os.fstat(fh.fileno())))
    except FileNotFoundError:
        raise DataError(f"shard {shown} does not exist; {restore_hint(shown)}") from None


def _check_layout(index: ShardIndex, n_items: int | None = None, keys: Sequence[str] | None = None) -> str | None:
    """Why ``index`` is not a complete shard of this project's layout (None if it is): three
    adjacent members per key (image, cls, json), ``n_items`` keys, or exactly ``keys``."""
    if index.layout:
        return index.layout
    if n_items is not None and len(index) != n_items:
        return f"{len(index)} images, expected {n_items}"
    if keys is not None and index.keys != list(keys):
        return "its keys differ from the expected ones"
    return None


def _exact_size(end: int) -> int:
    """Size of a tar written by tarfile whose last member's data ends at ``end``."""
    return -(-(end + 2 * BLOCK) // RECORD) * RECORD


class ShardReader:
    """Random access to shard members by (shard, key).

    The member index of a shard is built once (from the tar headers) and cached in memory; up
    to ``max_open`` file descriptors stay open (least recently used closed first). Reads use
    ``os.pread``, so they never move a shared file offset, and after a fork (DataLoader worker
    processes) the child drops the inherited descriptors and opens its own. An index is rebuilt
    when the file behind a newly opened descriptor differs (inode, size, mtime) from the indexed
    one. Thread-safe.

    Cost: indexing reads every member header with :mod:`tarfile` (about 0.1-0.2 ms per member,
    i.e. 0.3-0.6 s for a 1000-image shard) and keeps ~170 bytes per image. With DataLoader
    workers, call :meth:`index` for every shard in the parent before they start: the workers
    inherit the indexes (copy-on-write) instead of each building them again.
    """

    def __init__(self, max_open: int = 16, root: str | os.PathLike | None = None):
        self.max_open = max(1, int(max_open))
        self.root = root  # relative shard paths resolve against it (None: the current directory)
        self._indexes: dict[str, ShardIndex] = {}
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _resolve(self, shard) -> str:
        p = os.fspath(shard)
        return os.path.abspath(os.path.join(self.root, p) if self.root is not None else p)

    def _after_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child: never use the parent's descriptors
            inherited, self._fds = self._fds, OrderedDict()
            for fd in inherited.values():  # the child's copies only; the parent's stay open
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._lock = threading.Lock()  # it may have been held by a parent thread at the fork
            self._pid = os.getpid()

    def _open(self, shard) -> tuple[int, ShardIndex]:
        """(fd, index) of ``shard``; the caller holds the lock."""
        full = self._resolve(shard)
        fd = self._fds.get(full)
        if fd is not None:
            self._fds.move_to_end(full)
            return fd, self._indexes[full]
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raise DataError(f"shard {os.fspath(shard)} does not exist; {restore_hint(shard)}") from None
        try:
            stamp = _stamp(os.fstat(fd))
            index = self._indexes.get(full)
            if index is None or index.stamp != stamp:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    index = _scan(fh, os.fspath(shard), stamp)
                self._indexes[full] = index
        except BaseException:
            os.close(fd)
            raise
        self._fds[full] = fd
        while len(self._fds) > self.max_open:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd, index

    def index(self, shard) -> ShardIndex:
        self._after_fork()
        with self._lock:
            return self._open(shard)[1]

    def read(self, shard, key: str, ext: str | None = None) -> tuple[str, bytes]:
        """(ext, bytes) of member ``<key>.<ext>``; ``ext=None``: the image member."""
        self._after_fork()
        with self._lock:  # held while reading: an evicted descriptor is closed under the lock
            fd, index = self._open(shard)
            m = index.member(key, ext)
            data = _pread(fd, m.size, m.offset) if m is not None else None
        if m is None:
            what = "image" if ext is None else f".{ext} member"
            near = ", ".join(index.keys[:3]) + (", ..." if len(index.keys) > 3 else "")
            raise DataError(f"shard {os.fspath(shard)} has no {what} with key {key!r} (it holds {len(index.keys)} "
                            f"keys: {near or 'none'}): the manifest does not belong to this shard; "
                            f"{restore_hint(shard)}")
        if len(data) != m.size:
            self.forget(shard)  # a restored file is picked up by the next read
            raise DataError(f"shard {os.fspath(shard)}: member {m.name} (key {key!r}) is cut off ({len(data)} of "
                            f"{m.size} bytes): the file is truncated; {restore_hint(shard)}")
        return m.ext, data

    def records(self, shard) -> list[dict]:
        """The records (.json members) of ``shard`` in file order."""
        out = []
        for key in self.index(shard).keys:
            _, data = self.read(shard, key, JSON)
            out.append(_parse_record(data, shard, key))
        return out

    def adopt(self, shard, index: ShardIndex) -> None:
        """Use ``index`` (from :func:`scan_shard`) for ``shard`` instead of scanning it again; it is
        still checked against the file when a descriptor is opened."""
        self._after_fork()
        full = self._resolve(shard)
        with self._lock:
            if full not in self._fds:
                self._indexes[full] = index

    def forget(self, shard) -> None:
        """Drop the cached index and descriptor of ``shard`` (e.g. after it was rebuilt in place)."""
        self._after_fork()
        full = self._resolve(shard)
        with self._lock:
            self._indexes.pop(full, None)
            fd = self._fds.pop(full, None)
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        self._after_fork()
        with self._lock:
            while self._fds:
                os.close(self._fds.popitem()[1])

    def __del__(self):
        with contextlib.suppress(Exception):
            if self._pid == os.getpid():
                self.close()


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        chunks, done = [], 0
        while done < size:
            chunk = os.pread(fd, size - done, offset + done)
            if not chunk:
                break
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)
    os.lseek(fd, offset, os.SEEK_SET)  # no pread (Windows); the reader's lock is held
    return os.read(fd, size)


def _parse_record(data: bytes, shard, key: str) -> dict:
    try:
        rec = json.loads(data.decode("utf-8"))
        if not isinstance(rec, dict):
            raise ValueError("not a JSON object")
        return rec
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"shard {os.fspath(shard)}: the record {key}.json is corrupt ({exc}); "
                        f"{restore_hint(shard)}") from exc


_READER = ShardReader()


def default_reader() -> ShardReader:
    """The process-wide reader that :func:`read_image_bytes` (and ``load_rgb(record)``) use."""
    return _READER


def read_image_bytes(record: Mapping, reader: ShardReader | None = None, verify: bool = True) -> bytes:
    """The image bytes of a sharded record (``shard`` + ``key``), checked against its ``sha256``
    unless ``verify`` is false."""
    shard, key = record.get("shard"), record.get("key")
    if not shard or not key:
        raise DataError(f"record of {record.get('path')!r} names no shard and key: not a sharded record")
    _, data = (reader or _READER).read(shard, key)
    if verify and "sha256" in record:
        sha = hashlib.sha256(data).hexdigest()
        if sha != record["sha256"]:
            raise DataError(f"shard {shard}: the image of key {key!r} is corrupt or from another version of the set "
                            f"(sha256 {sha}, the manifest says {record['sha256']}); {restore_hint(shard)}")
    return data


@dataclass(frozen=True)
class ShardItem:
    key: str
    ext: str  # of the image member
    image: bytes
    cls: int
    record: dict


def iter_shard(shard: str | os.PathLike, verify: bool = True) -> Iterator[ShardItem]:
    """Stream one shard sequentially (tar stream mode, no seeking): its items in file order.
    ``verify``: check each image against its record's sha256."""
    shown = os.fspath(shard)
    group: dict[str, bytes] = {}
    current = None

    def finish() -> ShardItem:
        images = [e for e in group if e not in (CLS, JSON)]
        if len(images) != 1 or CLS not in group or JSON not in group:
            raise DataError(f"shard {shown}: key {current!r} has members {sorted(group)}, expected one image, "
                            f".cls and .json; {restore_hint(shown)}")
        rec = _parse_record(group[JSON], shown, current)
        data = group[images[0]]
        if verify and "sha256" in rec and hashlib.sha256(data).hexdigest() != rec["sha256"]:
            raise DataError(f"shard {shown}: the image of key {current!r} does not match its record's sha256 "
                            f"(corrupt member); {restore_hint(shown)}")
        try:
            cls = int(group[CLS].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise DataError(f"shard {shown}: {current}.cls is not a class index; {restore_hint(shown)}") from None
        return ShardItem(current, images[0], data, cls, rec)

    try:
        fh = open(shard, "rb")
    except FileNotFoundError:
        raise DataError(f"shard {shown} does not exist; {restore_hint(shown)}") from None
    with fh:
        try:
            with tarfile.open(fileobj=fh, mode="r|") as tf:
                for ti in tf:
                    if not ti.isreg():
                        continue
                    m = NAME_RE.match(ti.name)
                    if m is None:
                        raise DataError(f"shard {shown}: member {ti.name!r} has no '<key>.<ext>' name; "
                                        f"{restore_hint(shown)}")
                    key, ext = m.group(1), m.group(2)
                    if key != current:
                        if current is not None:
                            yield finish()
                        current, group = key, {}
                    data = tf.extractfile(ti).read()
                    if len(data) != ti.size:
                        raise tarfile.ReadError(f"member {ti.name} is cut off")
                    group[ext] = data
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"shard {shown} is truncated or corrupt ({exc}); {restore_hint(shown)}") from exc
    if current is not None:
        yield finish()


# --------------------------------------------------------------------------- resumable writer


class ShardedSetWriter:
    """Build the shards of an ``n_items`` image set while its images arrive in any order,
    possibly from several processes sharing ``out_dir`` (e.g. ranks of a generator).

    - :meth:`add` stores one finished item as one loose file ``scratch/<position>.item`` (a
      line of JSON with key, extension, class index and record, then the image bytes), written
      atomically, so an item exists exactly when its file does;
    - :meth:`flush_complete` packs every shard whose items are all present into its tar
      (temp name + rename) and then deletes those loose files; call it as often as convenient
      (after each batch), from any process;
    - :meth:`finished_shards` / :meth:`missing_positions` say what a resumed run still has to
      produce: a shard tar that exists and verifies (member count and names) is never
      rewritten; a truncated tar is rebuilt from the loose files, or, if they are gone, its
      positions are reported missing;
    - :meth:`close` (one process, after all writers are done) packs what is complete, checks
      that every shard exists and holds the expected members, removes ``scratch`` and returns
      the records with ``shard`` and ``key``, in canonical order.

    ``classes``: the set's class list (``.cls`` = index of the record's label in it).
    ``record_dir``: the folder that the records' ``shard`` field names (default ``out_dir``);
    differs from ``out_dir`` when the shards are built in a scratch folder that is renamed to
    the final output later. ``root``: the project root; absolute record paths are stored
    relative to it. ``scratch``: folder of the loose items (default ``out_dir/.<prefix>-items``).
    """

    def __init__(self, out_dir: str | os.PathLike, prefix: str, shard_size: int, n_items: int,
                 classes: Sequence[str], *, scratch: str | os.PathLike | None = None,
                 record_dir: str | os.PathLike | None = None, root: str | os.PathLike = "."):
        if int(shard_size) < 1 or int(n_items) < 0:
            raise DataError(f"shard_size = {shard_size}, n_items = {n_items}: need shard_size >= 1, n_items >= 0")
        self.out_dir = Path(out_dir)
        self.prefix = _check_prefix(prefix)
        self.shard_size, self.n_items = int(shard_size), int(n_items)
        self.classes = list(classes)
        self.scratch = Path(scratch) if scratch is not None else self.out_dir / f".{prefix}-items"
        self.record_dir = _record_dir(record_dir, out_dir, root)
        self.root = root
        self.n_shards = -(-self.n_items // self.shard_size)
        self._width = max(9, len(str(self.n_items)))
        self._verified: dict[int, ShardIndex] = {}  # shard -> index of a tar that passed _verify
        self._reader = ShardReader(max_open=4)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)

    # positions and names
    def shard_of(self, position: int) -> int:
        return position // self.shard_size

    def positions(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n_items))

    def shard_path(self, shard: int) -> Path:
        return self.out_dir / shard_name(self.prefix, shard)

    def _loose(self, position: int) -> Path:
        return self.scratch / f"{position:0{self._width}d}.item"

    # adding
    def add(self, position: int, key: str, image: bytes, record: Mapping, ext: str = "png") -> None:
        """Store the item at canonical ``position``: ``image`` (encoded bytes, e.g. PNG), its
        webdataset ``key`` and its manifest ``record`` (``path``, ``label``, ...; ``sha256`` is
        checked, or filled in). Adding an item that is already stored (in the scratch folder or in
        a finished shard) with the same content does nothing; with other content it is an error."""
        if not 0 <= position < self.n_items:
            raise DataError(f"position {position} is outside this set of {self.n_items} items")
        check_key(key)
        if not _EXT_RE.match(ext) or ext in (CLS, JSON):
            raise DataError(f"image extension {ext!r}: use a plain image suffix such as 'png'")
        where = f"item {position} ({key})"
        rec = json.loads(_record_json(_embedded(record, key, bytes(image), self.root, where)))  # plain JSON types
        meta = {"key": key, "ext": ext, "cls": _class_index(self.classes, rec["label"], where), "record": rec}
        shard = self.shard_of(position)
        if self._finished(shard):
            self._same_as_packed(shard, position, meta)
            return
        path = self._loose(position)
        old = self._read_item(path)[0]
        if old is not None:
            if _record_json(old) != _record_json(meta):
                raise DataError(f"{where} is already stored in {self.scratch} with other content (sha256 "
                                f"{old['record'].get('sha256')} vs {rec['sha256']}): the generator is not "
                                "deterministic or two different runs share this scratch folder; delete "
                                f"{self.scratch} to start over")
            return
        with atomic_open(path, "wb") as fh:
            fh.write(json.dumps(meta, sort_keys=True).encode("utf-8") + b"\n")
            fh.write(image)

    def _same_as_packed(self, shard: int, position: int, meta: dict) -> None:
        path = self.shard_path(shard)
        index = self._verified[shard]
        self._reader.adopt(path, index)
        key = index.keys[position - shard * self.shard_size]
        rec = _parse_record(self._reader.read(path, key, JSON)[1], path, key)
        if _record_json(rec) != _record_json(meta["record"]):
            raise DataError(f"item {position} ({meta['key']}) is already in the finished shard {path} with another "
                            f"record (sha256 {rec.get('sha256')} vs {meta['record']['sha256']}): the generator is "
                            f"not deterministic; delete {path} and its scratch folder {self.scratch} to rebuild it")

    @staticmethod
    def _read_item(path: Path, image: bool = False) -> tuple[dict | None, bytes | None]:
        """(meta, image bytes if ``image``) of a loose item; (None, None) if it is absent."""
        try:
            with open(path, "rb") as fh:
                meta = json.loads(fh.readline().decode("utf-8"))
                return meta, fh.read() if image else None
        except FileNotFoundError:
            return None, None
        except (ValueError, UnicodeDecodeError):  # written atomically, so only a foreign file: redo it
            return None, None

    # state
    def _present(self) -> dict[int, set[int]]:
        """shard -> positions stored as loose items."""
        out: dict[int, set[int]] = {}
        with os.scandir(self.scratch) as it:
            for entry in it:
                stem, dot, suffix = entry.name.partition(".")
                if suffix == "item" and stem.isdigit() and int(stem) < self.n_items:
                    out.setdefault(self.shard_of(int(stem)), set()).add(int(stem))
        return out

    def _finished(self, shard: int, keys: Sequence[str] | None = None) -> bool:
        """Whether shard's tar exists and holds the expected members (count/names; ``keys`` if given)."""
        path = self.shard_path(shard)
        try:
            stamp = _stamp(path.stat())
        except FileNotFoundError:
            return False
        index = self._verified.get(shard)
        if index is None or index.stamp != stamp:
            self._verified.pop(shard, None)
            try:
                index = scan_shard(path)
            except DataError:
                return False
            if index.stamp != stamp or _check_layout(index, len(self.positions(shard))) \
                    or stamp[2] != _exact_size(index.end):
                return False
            self._verified[shard] = index
        return keys is None or index.keys == list(keys)

    def finished_shards(self) -> list[int]:
        """Indices of the shards whose tar exists and verifies (never rewritten)."""
        return [s for s in range(self.n_shards) if self._finished(s)]

    def missing_positions(self) -> list[int]:
        """Positions that are neither in a finished shard nor stored as a loose item: what a
        resumed generator still has to add."""
        present = self._present()
        out = []
        for s in range(self.n_shards):
            have = present.get(s, set())
            if len(have) == len(self.positions(s)) or not self._finished(s):
                out.extend(p for p in self.positions(s) if p not in have)
        return out

    # packing
    def flush_complete(self) -> list[int]:
        """Pack every shard whose items are all stored loose; returns the shards this call wrote.

        A shard whose tar already exists and verifies with the loose items' keys (another process
        packed it, or a kill came between the rename and the clean-up) is not rewritten; only its
        loose files are removed. A tar that does not verify (truncated) is rebuilt."""
        written = []
        for shard, have in sorted(self._present().items()):
            positions = self.positions(shard)
            if len(have) != len(positions):
                continue
            metas = [self._read_item(self._loose(p))[0] for p in positions]
            if any(m is None for m in metas):  # another process packed it and is cleaning up
                if self._finished(shard):
                    continue
                raise DataError(f"shard {shard}: loose items in {self.scratch} vanished while packing, and "
                                f"{self.shard_path(shard)} is not complete: re-run to regenerate them")
            keys = [m["key"] for m in metas]
            if not self._finished(shard, keys):
                try:
                    self._pack(shard, metas)
                except FileNotFoundError:
                    if not self._finished(shard, keys):
                        raise
                else:
                    written.append(shard)
            self._remove_loose(positions)
        return written

    def _pack(self, shard: int, metas: list[dict]) -> None:
        path = self.shard_path(shard)

        def items():
            for p in self.positions(shard):
                meta, image = self._read_item(self._loose(p), image=True)
                if meta is None:
                    raise FileNotFoundError(self._loose(p))
                if hashlib.sha256(image).hexdigest() != meta["record"]["sha256"]:
                    raise DataError(f"{self._loose(p)}: the stored image does not match its sha256 (damaged "
                                    "scratch file): delete it and re-run")
                yield _Item(meta["key"], meta["ext"], image, meta["cls"], meta["record"])

        _write_shard(path, items())
        index = scan_shard(path)
        problem = _check_layout(index, len(metas), [m["key"] for m in metas])
        if problem or index.stamp[2] != _exact_size(index.end):
            raise DataError(f"shard {path} failed its check right after being written ({problem or 'size'}): "
                            "the disk or another process changed it; delete it and re-run")
        self._verified[shard] = index

    def _remove_loose(self, positions: Iterable[int]) -> None:
        for p in positions:
            with contextlib.suppress(FileNotFoundError):
                self._loose(p).unlink()

    def close(self) -> list[dict]:
        """Pack what is complete, verify every shard and return the set's records (with ``shard``
        and ``key``) in canonical order; DataError if items are missing. Removes ``scratch`` and
        leftover temporary files. Call from one process once all writers have finished."""
        self.flush_complete()
        missing = self.missing_positions()
        if missing:
            raise DataError(f"{len(missing)} of {self.n_items} items of {self.out_dir}/{self.prefix}-*.tar are missing "
                            f"(positions {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}): "
                            "add them (a resumed generator produces exactly missing_positions()) before close()")
        records = []
        self._reader.close()  # descriptors opened before a shard was rebuilt would read the old file
        for s in range(self.n_shards):
            path = self.shard_path(s)
            self._verified.pop(s, None)
            if not self._finished(s):
                index = scan_shard(path)  # raises for a missing or truncated tar
                problem = _check_layout(index, len(self.positions(s))) or "its size is not a complete shard's"
                raise DataError(f"shard {path} is incomplete ({problem}): delete it and re-run to rebuild it")
            name = f"{self.record_dir}/{path.name}"
            self._reader.adopt(path, self._verified[s])  # read the records without indexing it again
            for key, rec in zip(self._verified[s].keys, self._reader.records(path)):
                if rec.get("key") != key:
                    raise DataError(f"shard {path}: the record of key {key!r} names key {rec.get('key')!r}; "
                                    "delete the shard and re-run to rebuild it")
                records.append({**rec, "shard": name, "key": key})
        _check_unique(records, f"{self.out_dir}/{self.prefix}-*.tar")
        self._reader.close()
        if self.scratch.is_dir():
            for f in self.scratch.iterdir():
                f.unlink()
            self.scratch.rmdir()
        for tmp in self.out_dir.glob(f".{self.prefix}-*.tar.*.tmp"):  # temp files of killed packers
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _remove_stale_shards(self.out_dir, self.prefix, self.n_shards)
        return records


def _remove_stale_shards(out_dir: Path, prefix: str, n_shards: int) -> list[str]:
    """Remove ``<prefix>-<i:06d>.tar`` with ``i >= n_shards`` (left by an earlier, larger run), so
    the output folder holds exactly the set's shards."""
    pattern = re.compile(re.escape(prefix) + r"-(\d{6,})\.tar")
    removed = []
    for f in Path(out_dir).iterdir():
        m = pattern.fullmatch(f.name)
        if m and int(m.group(1)) >= n_shards:
            f.unlink()
            removed.append(f.name)
    return removed


def _check_unique(records: list[dict], where: str) -> None:
    for field in ("path", "key"):
        seen: set = set()
        for r in records:
            if r[field] not in seen:
                seen.add(r[field])
                continue
            raise DataError(f"{where}: two images have the {field} {r[field]!r}; every image needs its own "
                            f"{field} (pass distinct keys)")


# --------------------------------------------------------------------------- packing and unpacking


def default_keys(records: Sequence[Mapping]) -> list[str]:
    """Keys from the records' paths: the path below the folder all images share, suffix removed,
    other dots replaced by '_' (``.../images/coat/000012.png`` -> ``coat/000012``)."""
    paths = [os.path.normpath(os.fspath(r["path"])) for r in records]
    if not paths:
        return []
    common = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    keys = []
    for p in paths:
        rel = Path(os.path.relpath(os.path.abspath(p), common)).with_suffix("").as_posix()
        keys.append(check_key(rel.replace(".", "_")))
    return keys


def pack_manifest(records: Sequence[Mapping], out_dir: str | os.PathLike, prefix: str, shard_size: int,
                  classes: Sequence[str], *, keys: Sequence[str] | None = None,
                  record_dir: str | os.PathLike | None = None, root: str | os.PathLike = ".") -> list[dict]:
    """Pack a loose-file image set into shards ``out_dir/<prefix>-<i:06d>.tar``, in the order of
    ``records``; returns the records with ``shard`` and ``key`` (``path`` relative to ``root``).

    ``keys`` default to :func:`default_keys`. Each file is checked against its record's sha256.
    A shard that already exists and holds exactly the expected keys is kept (a killed packing
    run resumes). ``record_dir``/``root``: as for :class:`ShardedSetWriter`."""
    _check_prefix(prefix)
    if int(shard_size) < 1:
        raise DataError(f"shard_size = {shard_size}: need at least 1")
    keys = list(keys) if keys is not None else default_keys(records)
    if len(keys) != len(records):
        raise DataError(f"{len(keys)} keys for {len(records)} records")
    for k in keys:
        check_key(k)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record_dir = _record_dir(record_dir, out_dir, root)
    src_paths = [os.fspath(r["path"]) for r in records]
    src_paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in src_paths]
    out: list[dict] = []

    def item(i: int) -> _Item:
        rec, path = records[i], src_paths[i]
        try:
            image = Path(path).read_bytes()
        except FileNotFoundError:
            from synthmix.data.images import repair_hint

            raise DataError(f"cannot pack {path}: it does not exist; {repair_hint(path)}") from None
        emb = json.loads(_record_json(_embedded(rec, keys[i], image, root, f"{path}")))  # plain JSON types
        return _Item(keys[i], _image_ext(path), image, _class_index(classes, emb["label"], path), emb)

    def streamed(start: int, stop: int, name: str) -> Iterator[_Item]:  # one image in memory at a time
        for i in range(start, stop):
            it = item(i)
            out.append({**it.record, "shard": name})
            yield it

    for s, start in enumerate(range(0, len(records), shard_size)):
        stop = min(start + shard_size, len(records))
        path = out_dir / shard_name(prefix, s)
        name = f"{record_dir}/{path.name}"
        try:
            index = scan_shard(path) if path.exists() else None
        except DataError:
            index = None
        if index is not None and not _check_layout(index, stop - start, keys[start:stop]) \
                and index.stamp[2] == _exact_size(index.end):
            expected = [_stored(records[i], keys[i], root, src_paths[i]) for i in range(start, stop)]
            stored = ShardReader(max_open=1).records(path)
            if all(e.get("sha256", r.get("sha256")) == r.get("sha256")
                   and _record_json({**e, "sha256": r.get("sha256")}) == _record_json(r)
                   for e, r in zip(expected, stored)):
                out.extend({**r, "shard": name, "key": r["key"]} for r in stored)
                continue
        del out[start:]  # records of an attempt that failed half-way
        _write_shard(path, streamed(start, stop, name))
    _check_unique(out, f"{out_dir}/{prefix}-*.tar")
    _remove_stale_shards(out_dir, prefix, -(-len(records) // shard_size))
    return out


def unpack_manifest(records: Sequence[Mapping], *, out_root: str | os.PathLike = ".",
                    reader: ShardReader | None = None) -> list[dict]:
    """Write the images of sharded ``records`` back as loose files at their ``path`` (relative to
    ``out_root``; the shards are found by ``reader``, default the process-wide one, i.e. relative
    to the current directory), atomically, each checked against its sha256; a file that already
    holds the right bytes is left alone. Returns the records without ``shard`` and ``key``."""
    out = []
    for rec in records:
        dest = Path(rec["path"]) if os.path.isabs(rec["path"]) else Path(out_root) / rec["path"]
        if rec.get("shard"):
            have = dest.read_bytes() if dest.is_file() else None
            if have is None or hashlib.sha256(have).hexdigest() != rec.get("sha256"):
                write_bytes(dest, read_image_bytes(rec, reader=reader))
        out.append({k: v for k, v in rec.items() if k not in ("shard", "key")})
    return out
