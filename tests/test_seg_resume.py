"""seg_generate_labels and seg_generate_images resume image by image: a run killed part-way and
run again writes the same bytes as an uninterrupted run, reusing the finished files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import synthmix.segmentation.data as data_mod
import synthmix.segmentation.label_ddpm as label_mod
from shipped_params import section
from synthmix.core.resume import blocks_to_run
from synthmix.data.manifest import read_manifest
from synthmix.segmentation.data import pair_record, save_mask, save_rgb
from synthmix.segmentation.label_ddpm import generate_label_maps, train_label_ddpm
from synthmix.segmentation.spade import generate_spade_images, train_spade

SIZE = 32


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A label DDPM (1 step) and a SPADE checkpoint (1 step) on four 32 px pairs."""
    root = tmp_path_factory.mktemp("seg_models")
    records, images, masks = [], [], []
    for i in range(4):
        m = np.zeros((SIZE, SIZE), np.uint8)
        m[4 + i : 20, 6:26] = 1 + i % 2
        im = np.full((SIZE, SIZE, 3), 40 * i, np.uint8)
        save_mask(m, root / f"m{i}.png")
        save_rgb(im, root / f"i{i}.png")
        records.append(pair_record(root / f"i{i}.png", root / f"m{i}.png", "real"))
        images.append(im)
        masks.append(m)
    labels = section("seg_train_labels", resolution=16, block_out_channels=[8, 16], steps=1, batch_size=4)
    train_label_ddpm(labels, records, ["bg", "a", "b"], 255, root / "label_ddpm", torch.device("cpu"))
    spade = section("seg_train_spade", ngf=8, ndf=8, spade_hidden=8, z_dim=8, steps=1, batch_size=2)
    train_spade(spade, np.stack(images), np.stack(masks), 3, root / "spade", show_progress=False)
    return root


def test_blocks_are_aligned_to_the_batch_size():
    done = [True, True, False, True, True, True, True]
    assert blocks_to_run(7, 3, done) == [range(0, 3)]
    assert blocks_to_run(7, 3, [True] * 6 + [False]) == [range(6, 7)]
    assert blocks_to_run(7, 3, [True] * 7) == []


def test_label_maps_and_images_resume_to_the_same_bytes(models, tmp_path, monkeypatch):
    p_labels = section("seg_generate_labels", count=7, steps=2, batch_size=3)
    p_images = section("seg_generate_images", batch_size=3)

    # uninterrupted runs
    ref = generate_label_maps(p_labels, models / "label_ddpm", SIZE, tmp_path / "ref_labels")
    assert ref["reused"] == 0 and ref["generated"] == 7

    # label maps: killed after 5 saves (raw + mask of maps 0 and 1, then the raw of map 2)
    real_save, saved = label_mod.save_mask, []

    def save_then_die(mask, path):
        if len(saved) == 5:
            raise KeyboardInterrupt
        real_save(mask, path)
        saved.append(Path(path))

    monkeypatch.setattr(label_mod, "save_mask", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate_label_maps(p_labels, models / "label_ddpm", SIZE, tmp_path / "labels")
    monkeypatch.setattr(label_mod, "save_mask", real_save)
    assert not (tmp_path / "labels").exists()
    (scratch,) = (tmp_path / ".partial").glob("seg_generate_labels-*")
    (scratch / "masks" / ".00001.png.x.tmp").write_bytes(b"half")  # a killed write's leftover
    stats = generate_label_maps(p_labels, models / "label_ddpm", SIZE, tmp_path / "labels")
    assert stats["reused"] == 2 and stats["generated"] == 5
    assert stats["metrics"] == ref["metrics"]
    assert _digests(tmp_path / "labels") == _digests(tmp_path / "ref_labels")
    assert not (tmp_path / ".partial").exists()  # moved into place, scratch root removed

    # SPADE images: killed after 4 images; one finished image is then truncated (corrupt)
    label_records = read_manifest(tmp_path / "labels" / "labels.jsonl")
    ref_pairs = generate_spade_images(p_images, label_records, models / "spade", tmp_path / "ref_images")
    assert ref_pairs["reused"] == 0 and ref_pairs["metrics"]["pairs"] == 7
    real_rgb, written = data_mod.save_rgb, []

    def rgb_then_die(image, path):
        if len(written) == 4:
            raise KeyboardInterrupt
        real_rgb(image, path)
        written.append(Path(path))

    monkeypatch.setattr(data_mod, "save_rgb", rgb_then_die)
    with pytest.raises(KeyboardInterrupt):
        generate_spade_images(p_images, label_records, models / "spade", tmp_path / "images")
    monkeypatch.setattr(data_mod, "save_rgb", real_rgb)
    written[3].write_bytes(written[3].read_bytes()[:30])
    stats = generate_spade_images(p_images, label_records, models / "spade", tmp_path / "images")
    assert stats["reused"] == 3 and stats["corrupt_regenerated"] == 1 and stats["generated"] == 4
    assert _digests(tmp_path / "images") == _digests(tmp_path / "ref_images")
    pairs = read_manifest(tmp_path / "images" / "pairs.jsonl")
    assert all(Path(r["path"]).is_file() for r in pairs)
    assert (tmp_path / "images" / "pairs.jsonl").read_text().count('"mask": "../labels/masks/') == 7
