"""Manifests, atomic writes, seed derivation and image loading."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from synthmix.core.atomic import atomic_open, read_json, write_json
from synthmix.core.errors import DataError
from synthmix.core.seeding import derive_seed, image_seed
from synthmix.data.images import load_rgb
from synthmix.data.manifest import file_sha256, read_manifest, write_manifest


def test_image_seed_is_stable_and_distinct():
    # A fixed value: seeds must not change between releases, or old manifests stop reproducing.
    assert image_seed(0, "coat", 0) == image_seed(0, "coat", 0)
    assert image_seed(0, "coat", 0) == derive_seed("image", 0, "coat", 0)
    seeds = {image_seed(s, c, i) for s in (0, 1) for c in ("coat", "dress") for i in range(100)}
    assert len(seeds) == 400
    assert all(0 <= s < 2**63 for s in seeds)
    # Type matters: the integer 1 and the string "1" are different parts.
    assert derive_seed(1) != derive_seed("1")


def test_image_seed_pinned_value():
    assert image_seed(0, "coat", 0) == 5280563854397881040


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    img = tmp_path / "images" / "a.png"
    img.parent.mkdir()
    Image.new("L", (4, 4)).save(img)
    rec = {"path": str(img), "label": "coat", "source": "real", "sha256": file_sha256(img), "seed": 3}
    manifest = tmp_path / "sets" / "m.jsonl"
    write_manifest(manifest, [rec])
    stored = json.loads(manifest.read_text())
    assert stored["path"] == "../images/a.png"
    assert stored["seed"] == 3
    # Moving the whole tree keeps the manifest valid.
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    os.rename(tmp_path, moved)
    back = read_manifest(moved / "sets" / "m.jsonl")
    assert back[0]["path"] == str(moved / "images" / "a.png")
    assert file_sha256(back[0]["path"]) == rec["sha256"]


def test_manifest_rejects_incomplete_records(tmp_path):
    with pytest.raises(DataError, match="missing sha256"):
        write_manifest(tmp_path / "m.jsonl", [{"path": "x", "label": "a", "source": "real"}])
    with pytest.raises(DataError, match="source must be"):
        write_manifest(tmp_path / "m.jsonl", [{"path": "x", "label": "a", "source": "fake", "sha256": ""}])
    (tmp_path / "bad.jsonl").write_text('{"path": "x"\n')
    with pytest.raises(DataError, match="bad.jsonl line 1"):
        read_manifest(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "nope.jsonl")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write('{"v": 2, "half')
            raise RuntimeError("interrupted")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_load_rgb_converts_modes_and_names_corrupt_files(tmp_path):
    rgba = Image.new("RGBA", (3, 3), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "t.png")
    out = load_rgb(tmp_path / "t.png")
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    Image.fromarray(np.full((3, 3), 7, np.uint8)).save(tmp_path / "g.png")
    assert load_rgb(tmp_path / "g.png").getpixel((1, 1)) == (7, 7, 7)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="broken.png"):
        load_rgb(tmp_path / "broken.png")


def test_timings_files_sit_beside_the_declared_metrics_under_metrics_timings(tmp_path):
    from pathlib import Path

    from synthmix.core.timings import add_stage_seconds, timings_path, write_timings

    assert timings_path("metrics/generate.json") == Path("metrics/timings/generate.json")
    assert timings_path("metrics/train/pct0-seed0/metrics.json") == Path("metrics/timings/train/pct0-seed0.json")
    assert timings_path("metrics/seg/spade.json") == Path("metrics/timings/seg/spade.json")
    assert timings_path("out/m.json") == Path("out/timings/m.json")
    metrics = tmp_path / "metrics" / "generate.json"
    write_timings(metrics, {"seconds": 1.5})
    add_stage_seconds(metrics, 2.0, since=0)  # written during this run: merged
    assert read_json(tmp_path / "metrics/timings/generate.json") == {"seconds": 1.5, "stage_seconds": 2.0}
    later = os.path.getmtime(tmp_path / "metrics/timings/generate.json") + 60
    add_stage_seconds(metrics, 3.0, since=later)  # an earlier run's file: replaced, not merged
    assert read_json(tmp_path / "metrics/timings/generate.json") == {"stage_seconds": 3.0}


def test_a_full_disk_in_an_atomic_write_is_a_clear_error_without_a_temp_file(tmp_path, monkeypatch):
    import errno

    from synthmix.core import atomic
    from synthmix.core.errors import DiskFullError

    target = tmp_path / "out.json"
    write_json(target, {"v": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskFullError, match="no space left on device while writing .*out.json") as err:
        write_json(target, {"v": 2})
    assert "Free disk space" in str(err.value) and "MiB free" in str(err.value)
    assert read_json(target) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_load_rgb_says_which_stage_wrote_a_damaged_image(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages:\n  generate:\n    cmd: x\n    outs:\n      - data/synthetic\n")
    bad = tmp_path / "data/synthetic/images/a/00000.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        load_rgb("data/synthetic/images/a/00000.png")
    text = str(err.value)
    assert "00000.png" in text and "`dvc checkout --force data/synthetic`" in text and "`dvc repro -f generate`" in text
    with pytest.raises(DataError, match="replace or remove the file"):
        load_rgb(tmp_path / "elsewhere.png")
