"""Image sets as webdataset tar shards (synthmix.data.shards): round trip, byte-identical
shards whatever the write order, resume after a kill, and the errors users see."""

import hashlib
import io
import json
import multiprocessing
import os
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthmix.core.errors import DataError
from synthmix.data.images import load_rgb
from synthmix.data.shards import (
    ShardedSetWriter,
    ShardReader,
    check_key,
    iter_shard,
    pack_manifest,
    shard_name,
    unpack_manifest,
)

CLASSES = ["coat", "dress", "shirt"]
N, SHARD = 23, 5  # 5 shards, the last one holding 3 items


def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def items():
    """(key, png bytes, record) of a small synthetic set in canonical order."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(N):
        label = CLASSES[i % 3]
        key = f"{label}/{i:06d}"
        png = _png(rng)
        rec = {"path": f"data/synthetic/images/{key}.png", "label": label, "source": "synthetic",
               "sha256": hashlib.sha256(png).hexdigest(), "seed": 1000 + i, "generator": "ddpm", "steps": 50}
        out.append((key, png, rec))
    return out


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The project root as the current directory (records hold project-relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _writer(out, **kw):
    return ShardedSetWriter(out, "set", SHARD, N, CLASSES, root=".", **kw)


def _write(items, out, order=None, batch=None):
    """Add ``items`` at their positions in ``order``, flushing after every ``batch`` items."""
    w = _writer(out)
    order = list(range(N)) if order is None else order
    for n, pos in enumerate(order, 1):
        key, png, rec = items[pos]
        w.add(pos, key, png, rec)
        if batch and n % batch == 0:
            w.flush_complete()
    return w.close()


def _shard_bytes(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(out).glob("set-*.tar"))}


def test_round_trip_load_rgb_webdataset_and_streaming(project, items):
    import webdataset as wds

    records = _write(items, "data/synthetic/shards")
    assert sorted(os.listdir("data/synthetic/shards")) == [shard_name("set", i) for i in range(5)]  # no scratch left
    assert [r["key"] for r in records] == [k for k, _, _ in items]
    for (key, png, rec), got in zip(items, records):
        assert got == {**rec, "key": key, "shard": f"data/synthetic/shards/set-{records.index(got) // SHARD:06d}.tar"}
        expected = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        assert np.array_equal(np.asarray(load_rgb(got)), expected)
    # The loose-file path API is unchanged: a record without a shard, and a bare path, read the file.
    Path("loose.png").write_bytes(items[0][1])
    assert load_rgb({"path": "loose.png"}).size == load_rgb("loose.png").size == (7, 6)

    urls = [str(p) for p in sorted(Path("data/synthetic/shards").glob("set-*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [r["key"] for r in records]
    for s, (_, png, rec), got in zip(samples, items, records):
        assert s["png"] == png
        assert int(s["cls"]) == CLASSES.index(rec["label"])
        assert json.loads(s["json"]) == {k: v for k, v in got.items() if k != "shard"}
    streamed = [it for u in urls for it in iter_shard(u)]
    assert [(it.key, it.ext, it.image, it.cls) for it in streamed] == \
        [(k, "png", png, CLASSES.index(r["label"])) for k, png, r in items]

    # Fixed headers: nothing from the clock or the user, three adjacent members per image.
    with tarfile.open(urls[0]) as tf:
        members = tf.getmembers()
    assert [m.name for m in members[:3]] == ["coat/000000.png", "coat/000000.cls", "coat/000000.json"]
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0o444, 0, 0, "", "")}


def test_timm_wds_reader_reads_the_shards(project, items):
    from timm.data.readers.reader_wds import ReaderWds

    _write(items, "shards")
    reader = ReaderWds(root="shards", split="set-{000000..000004}.tar|23")  # input_key jpg;png;webp
    got = list(reader)
    assert [t for _, t in got] == [CLASSES.index(r["label"]) for _, _, r in items]
    assert got[4][0].size == (7, 6)


def test_pack_manifest_equals_the_writer_and_unpacks_to_the_same_files(project, items):
    for _, png, rec in items:  # the loose-file set, with absolute paths as read_manifest returns them
        Path(rec["path"]).parent.mkdir(parents=True, exist_ok=True)
        Path(rec["path"]).write_bytes(png)
    loose = [{**rec, "path": str(project / rec["path"])} for _, _, rec in items]
    packed = pack_manifest(loose, "packed", "set", SHARD, CLASSES, root=project)
    written = _write(items, "written")
    assert _shard_bytes("packed") == _shard_bytes("written")  # the same bytes whichever way a set was made
    assert [r["key"] for r in packed] == [k for k, _, _ in items]  # keys below the shared folder, no suffix
    assert [{**r, "shard": None} for r in packed] == [{**r, "shard": None} for r in written]
    # Packing again keeps the finished shards (a killed packing run resumes).
    inodes = {p.name: p.stat().st_ino for p in Path("packed").glob("*.tar")}
    Path("packed/set-000005.tar").write_bytes(b"a shard of an earlier, larger set")
    assert pack_manifest(loose, "packed", "set", SHARD, CLASSES, root=project) == packed
    assert inodes == {p.name: p.stat().st_ino for p in Path("packed").glob("*.tar")}

    files = unpack_manifest(packed, out_root="restored")
    assert files == [{k: v for k, v in r.items() if k not in ("shard", "key")} for r in packed]
    for _, png, rec in items:
        assert (Path("restored") / rec["path"]).read_bytes() == png

    bad = [dict(r) for r in loose]
    bad[7]["sha256"] = "0" * 64  # the file changed since the manifest was written
    with pytest.raises(DataError, match=r"images/dress/000007\.png.*sha256"):
        pack_manifest(bad, "packed2", "set", SHARD, CLASSES, root=project)


@pytest.mark.parametrize("variant", ["reversed, flush after each", "shuffled, batches of 4", "batches of 7",
                                     "two writers", "other folder"])
def test_shard_bytes_do_not_depend_on_order_batches_or_writers(project, items, variant):
    reference = _shard_bytes(_write_and_return_dir(items, "ref"))
    if variant == "reversed, flush after each":
        _write(items, "out", order=list(range(N))[::-1], batch=1)
    elif variant == "shuffled, batches of 4":
        order = list(range(N))
        random.Random(3).shuffle(order)
        _write(items, "out", order=order, batch=4)
    elif variant == "batches of 7":
        _write(items, "out", batch=7)
    elif variant == "two writers":  # two ranks, positions rank::2, one scratch folder, rank 0 closes
        ranks = [_writer("out"), _writer("out")]
        for pos in range(N):
            ranks[pos % 2].add(pos, *items[pos])
            if pos % 3 == 0:
                ranks[(pos + 1) % 2].flush_complete()
        ranks[1].flush_complete()
        ranks[0].close()
    else:  # another output folder (and thus another `shard` field): the shard bytes stay the same
        _write(items, "elsewhere/deeper")
        assert _shard_bytes("elsewhere/deeper") == reference
        return
    assert _shard_bytes("out") == reference


def _write_and_return_dir(items, out):
    _write(items, out)
    return out


def test_resume_after_a_kill_keeps_finished_shards_and_gives_the_same_bytes(project, items):
    reference = _shard_bytes(_write_and_return_dir(items, "ref"))

    w = _writer("out")
    for pos in list(range(10)) + [10, 12]:
        w.add(pos, *items[pos])
    assert w.flush_complete() == [0, 1]  # shard 2 (10..14) is incomplete
    for pos in range(15, 20):
        w.add(pos, *items[pos])
    out = Path("out")  # the kill came while shard 3 was written (by a tool without temp name + rename)
    (out / "set-000003.tar").write_bytes(reference["set-000003.tar"][:1500])
    (out / "set-000004.tar").write_bytes(reference["set-000004.tar"][:3000])  # truncated, its items gone
    (out / ".set-000004.tar.x1y2.tmp").write_bytes(b"half")  # a killed atomic write's temp file
    finished = {s: ((out / shard_name("set", s)).stat().st_ino, (out / shard_name("set", s)).stat().st_mtime_ns)
                for s in (0, 1)}
    del w  # the kill

    resumed = _writer("out")
    assert resumed.finished_shards() == [0, 1]  # the truncated tars do not count
    missing = resumed.missing_positions()
    assert missing == [11, 13, 14, 20, 21, 22]  # shard 3 is rebuilt from its loose items
    for pos in reversed(missing):
        resumed.add(pos, *items[pos])
    resumed.add(3, *items[3])  # re-adding an item of a finished shard with the same content: a no-op
    records = resumed.close()
    assert _shard_bytes("out") == reference
    assert {s: ((out / shard_name("set", s)).stat().st_ino, (out / shard_name("set", s)).stat().st_mtime_ns)
            for s in (0, 1)} == finished  # never rewritten
    assert sorted(p.name for p in out.iterdir()) == sorted(reference)  # scratch and temp files removed
    assert [r["key"] for r in records] == [k for k, _, _ in items]


def test_writer_rejects_conflicting_or_invalid_items(project, items):
    w = _writer("out")
    key, png, rec = items[0]
    w.add(0, key, png, rec)
    w.add(0, key, png, rec)  # the same item again: fine
    other = items[1][1]
    with pytest.raises(DataError, match="item 0 .*sha256"):  # the record's hash does not fit the bytes
        w.add(0, key, other, rec)
    with pytest.raises(DataError, match="already stored .*not deterministic"):
        w.add(0, key, other, {k: v for k, v in rec.items() if k != "sha256"})
    with pytest.raises(DataError, match="invalid shard key 'coat/0.5'"):
        w.add(1, "coat/0.5", png, rec)
    with pytest.raises(DataError, match="label 'hat' is not one of"):
        w.add(1, "hat/1", png, {**rec, "label": "hat", "sha256": hashlib.sha256(png).hexdigest()})
    with pytest.raises(DataError, match="outside this set of 23"):
        w.add(23, key, png, rec)
    with pytest.raises(DataError, match=r"22 of 23 items .* are missing \(positions 1, 2, 3"):
        w.close()
    assert check_key("coat/000012") == "coat/000012"


def test_read_errors_name_the_shard_the_key_and_the_fix(project, items):
    records = _write(items, "out")
    rec = records[6]  # shard 1
    shard = rec["shard"]
    assert load_rgb(rec).size == (7, 6)

    with pytest.raises(DataError, match=r"out/set-000001\.tar has no image with key 'coat/999999'.*dvc checkout"):
        load_rgb({**rec, "key": "coat/999999"})
    with pytest.raises(DataError, match=r"shard out/set-000042\.tar does not exist.*dvc checkout"):
        load_rgb({**rec, "shard": "out/set-000042.tar"})

    data = bytearray(Path(shard).read_bytes())
    member = ShardReader().index(shard).image_member(rec["key"])
    data[member.offset + member.size // 2] ^= 0xFF  # one flipped byte inside the PNG
    Path(shard).write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"out/set-000001\.tar: the image of key 'coat/000006' is corrupt.*dvc"):
        load_rgb({**rec, "shard": shard})

    Path(shard).write_bytes(bytes(data[:member.offset + 10]))  # a truncated tar (a kill while copying)
    with pytest.raises(DataError, match=r"out/set-000001\.tar is truncated.*dvc checkout"):
        ShardReader().read(shard, rec["key"])
    with pytest.raises(DataError, match=r"out/set-000001\.tar.*(truncated|cut off).*dvc checkout"):
        load_rgb(rec)  # the default reader, whose cached index predates the truncation
    with pytest.raises(DataError, match=r"out/set-000001\.tar is truncated or corrupt"):
        list(iter_shard(shard))


def _sha_of_pixels(rec):
    return hashlib.sha256(np.asarray(load_rgb(rec)).tobytes()).hexdigest()


def test_reader_works_in_forked_worker_processes(project, items):
    records = _write(items, "out")
    expected = [_sha_of_pixels(r) for r in records]  # the parent's reader now holds open descriptors
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_sha_of_pixels, records) == expected
    assert [_sha_of_pixels(r) for r in records] == expected  # the parent's descriptors still work
