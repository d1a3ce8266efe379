"""The real-data prepare stage: sources, class matching, stratified splits, determinism."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from shipped_params import section
from synthmix.config.sections.prepare import PrepareParams
from synthmix.core.errors import DataError, MissingAssetError, ParamsError
from synthmix.data.manifest import file_sha256, read_manifest
from synthmix.data.prepare import prepare_real
from synthmix.data.sources import (
    FASHION_MNIST_CLASSES,
    ImageFolderSource,
    load_torchvision,
    match_classes,
    normalize_name,
    read_idx,
    resize_center_crop,
)

REPO = Path(__file__).resolve().parents[1]
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (make setup)",
)


def make_params(**overrides) -> PrepareParams:
    base = dict(classes=["t_shirt_top", "trouser", "ankle_boot"], train_per_class=4, val_per_class=2,
                test_per_class=3, seed=0)  # fmt: skip
    base.update(overrides)
    return section("prepare", **base)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)


@pytest.fixture
def fake_fmnist(tmp_path) -> Path:
    """Small Fashion-MNIST-shaped IDX files: 10 classes x 12 train, x 5 test; pixel (0, 0) = class."""
    root = tmp_path / "fmnist"
    root.mkdir()
    rng = np.random.default_rng(123)
    for prefix, per_class in (("train", 12), ("t10k", 5)):
        labels = np.tile(np.arange(10), per_class)
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def manifests(out: Path) -> dict[str, list[dict]]:
    return {s: read_manifest(out / f"{s}.jsonl") for s in ("train", "val", "test")}


# --- names and IDX -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("T-shirt/top", "t_shirt_top"), ("Ankle boot", "ankle_boot"), ("  Polar--Bear! ", "polar_bear"),
     ("automobile", "automobile"), ("Class 2", "class_2")],
)  # fmt: skip
def test_normalize_name(name, expected):
    assert normalize_name(name) == expected


def test_match_classes_is_normalised_and_lists_found_classes():
    assert match_classes(["t_shirt_top", "ANKLE-BOOT"], FASHION_MNIST_CLASSES, "fm") == [0, 9]
    with pytest.raises(DataError) as err:
        match_classes(["trouser", "horse"], FASHION_MNIST_CLASSES, "fashion_mnist_debian")
    msg = str(err.value)
    assert "'horse'" in msg and "'T-shirt/top'" in msg and "'Ankle boot'" in msg


@needs_debian
def test_read_idx_debian_files():
    images = read_idx(DEBIAN_FMNIST / "train-images-idx3-ubyte.gz")
    labels = read_idx(DEBIAN_FMNIST / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert sorted(np.unique(labels)) == list(range(10))
    assert np.bincount(labels).tolist() == [6000] * 10
    assert read_idx(DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)


def test_read_idx_uncompressed_roundtrip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x-idx3-ubyte", a, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte"), a)


def test_read_idx_corrupt_files_name_the_file(tmp_path):
    good = tmp_path / "good.gz"
    write_idx(good, np.zeros((50, 28, 28), np.uint8))
    truncated_gz = tmp_path / "truncated-images-idx3-ubyte.gz"
    truncated_gz.write_bytes(good.read_bytes()[:-20])
    short = tmp_path / "short-images-idx3-ubyte.gz"
    short.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:-100]))
    bad_magic = tmp_path / "magic-images-idx3-ubyte.gz"
    bad_magic.write_bytes(gzip.compress(b"\x12\x34\x08\x03" + bytes(100)))
    for path in (truncated_gz, short, bad_magic):
        with pytest.raises(DataError, match=path.name):
            read_idx(path)


# --- Fashion-MNIST splits ------------------------------------------------------------------


def test_missing_debian_files_say_how_to_install(tmp_path):
    with pytest.raises(MissingAssetError) as err:
        prepare_real(make_params(root=str(tmp_path)), tmp_path / "out")
    msg = str(err.value)
    assert "dataset-fashion-mnist" in msg and "prepare.source" in msg and "make setup" in msg


def test_exact_counts_disjoint_splits_and_layout(fake_fmnist, tmp_path):
    params = make_params(root=str(fake_fmnist), classes=["T-shirt/top", "trouser", "Ankle boot"])
    out = tmp_path / "out"
    stats = prepare_real(params, out)

    assert stats["counts"] == {
        "train": {c: 4 for c in params.classes},
        "val": {c: 2 for c in params.classes},
        "test": {c: 3 for c in params.classes},
    }
    assert stats["total"] == {"train": 12, "val": 6, "test": 9}
    assert stats["skipped_corrupt"] == 0 and stats["source"] == "fashion_mnist_debian"
    assert json.loads((out / "classes.json").read_text()) == {
        "classes": ["T-shirt/top", "trouser", "Ankle boot"], "mode": "L", "source": "fashion_mnist_debian"}

    recs = manifests(out)
    origins = [r["origin"] for s in recs.values() for r in s]
    assert len(origins) == len(set(origins)) == 27  # no image in two splits
    expected_label = {"T-shirt/top": 0, "trouser": 1, "Ankle boot": 9}
    for split, rows in recs.items():
        for r in rows:
            assert r["split"] == split and r["source"] == "real"
            official = "test" if split == "test" else "train"
            assert r["origin"].startswith(f"fashion_mnist:{official}:")
            assert r["sha256"] == file_sha256(r["path"])
            with Image.open(r["path"]) as im:
                assert im.format == "PNG" and im.mode == "L" and im.size == (28, 28)
                assert im.getpixel((0, 0)) == expected_label[r["label"]]  # the right class was taken
            index = r["origin"].rsplit(":", 1)[1]
            assert Path(r["path"]) == out / "images" / split / normalize_name(r["label"]) / f"{index}.png"


def test_same_seed_identical_bytes_different_seed_different_selection(fake_fmnist, tmp_path):
    params = make_params(root=str(fake_fmnist))
    prepare_real(params, tmp_path / "a")
    prepare_real(params, tmp_path / "b")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "classes.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    prepare_real(make_params(root=str(fake_fmnist), seed=1), tmp_path / "c")
    origins = lambda d: [r["origin"] for r in read_manifest(tmp_path / d / "train.jsonl")]  # noqa: E731
    assert origins("a") != origins("c")


def test_class_selection_does_not_depend_on_other_classes(fake_fmnist, tmp_path):
    prepare_real(make_params(root=str(fake_fmnist), classes=["trouser", "coat"]), tmp_path / "a")
    prepare_real(make_params(root=str(fake_fmnist), classes=["bag", "Trouser"]), tmp_path / "b")
    pick = lambda d, c: [r["origin"] for r in read_manifest(tmp_path / d / "train.jsonl")  # noqa: E731
                         if normalize_name(r["label"]) == c]  # fmt: skip
    assert pick("a", "trouser") == pick("b", "trouser")


def test_rerun_with_fewer_images_removes_stale_files(fake_fmnist, tmp_path):
    out = tmp_path / "out"
    prepare_real(make_params(root=str(fake_fmnist), train_per_class=8), out)
    prepare_real(make_params(root=str(fake_fmnist), train_per_class=3), out)
    on_disk = {p for p in (out / "images").rglob("*") if p.is_file()}
    listed = {Path(r["path"]) for rows in manifests(out).values() for r in rows}
    assert on_disk == listed and len(listed) == 3 * (3 + 2 + 3)


def test_not_enough_images_says_how_many_and_what_to_lower(fake_fmnist, tmp_path):
    with pytest.raises(DataError) as err:
        prepare_real(make_params(root=str(fake_fmnist), train_per_class=10, val_per_class=3), tmp_path / "o")
    msg = str(err.value)
    assert "has 12 images in the official train split" in msg and "13 are needed" in msg
    assert "prepare.train_per_class" in msg and "prepare.val_per_class" in msg
    assert not (tmp_path / "o").exists()  # checked before writing anything


def test_missing_class_lists_the_dataset_classes(fake_fmnist, tmp_path):
    with pytest.raises(DataError) as err:
        prepare_real(make_params(root=str(fake_fmnist), classes=["trouser", "zebra"]), tmp_path / "o")
    assert "'zebra'" in str(err.value) and "'Ankle boot'" in str(err.value)


def test_classes_that_normalise_alike_are_rejected(fake_fmnist, tmp_path):
    with pytest.raises(ParamsError, match="same class"):
        prepare_real(make_params(root=str(fake_fmnist), classes=["T-shirt/top", "t_shirt_top"]), tmp_path / "o")


@needs_debian
def test_debian_fashion_mnist_end_to_end(tmp_path):
    params = make_params(root=str(DEBIAN_FMNIST), train_per_class=5, val_per_class=2, test_per_class=4)
    stats = prepare_real(params, tmp_path / "out")
    assert stats["total"] == {"train": 15, "val": 6, "test": 12}
    labels = read_idx(DEBIAN_FMNIST / "t10k-labels-idx1-ubyte.gz")
    wanted = {"t_shirt_top": 0, "trouser": 1, "ankle_boot": 9}
    for r in read_manifest(tmp_path / "out" / "test.jsonl"):
        assert labels[int(r["origin"].rsplit(":", 1)[1])] == wanted[r["label"]]


# --- torchvision ---------------------------------------------------------------------------


def test_torchvision_missing_dataset_names_the_params(tmp_path):
    with pytest.raises(MissingAssetError) as err:
        load_torchvision("cifar10", tmp_path, download=False)
    msg = str(err.value)
    assert "prepare.download" in msg and "prepare.root" in msg and "prepare.source" in msg


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10 (no download here): 4 images per class per split."""

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root, train=True, download=False):
        n = 40
        self.targets = [i % 10 for i in range(n)]
        self.data = np.zeros((n, 32, 32, 3), np.uint8)
        self.data[:, :, :, 0] = np.asarray(self.targets, np.uint8)[:, None, None] * 20  # red = class * 20
        self.data[:, :, :, 2] = 0 if train else 255
        self.data[:, 0, 0, 1] = np.arange(n)  # distinct images: no copies across the splits


def test_torchvision_cifar10_rgb_splits(monkeypatch, tmp_path):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    params = make_params(source="torchvision", dataset="cifar10", root=str(tmp_path / "tv"),
                         classes=["Automobile", "cat"], train_per_class=2, val_per_class=1, test_per_class=2)  # fmt: skip
    out = tmp_path / "out"
    stats = prepare_real(params, out)
    assert stats["source"] == "torchvision:cifar10" and stats["mode"] == "RGB"
    assert stats["total"] == {"train": 4, "val": 2, "test": 4}
    for split, rows in manifests(out).items():
        for r in rows:
            assert r["origin"].startswith("cifar10:" + ("test" if split == "test" else "train") + ":")
            with Image.open(r["path"]) as im:
                red, _, blue = im.getpixel((3, 3))
                assert im.mode == "RGB" and im.size == (32, 32)
                assert red == 20 * FakeCIFAR10.classes.index(r["label"].lower())
                assert blue == (255 if split == "test" else 0)


def test_torchvision_download_failure_is_explained(monkeypatch, tmp_path):
    from urllib.error import URLError

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "STL10", offline)
    with pytest.raises(MissingAssetError) as err:
        load_torchvision("stl10", tmp_path, download=True)
    assert "could not be downloaded" in str(err.value) and "prepare.root" in str(err.value)


def test_torchvision_fashion_mnist_reads_unpacked_files(fake_fmnist, tmp_path):
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in fake_fmnist.glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    source = load_torchvision("fashion_mnist", tmp_path / "tv")
    assert source.class_names == list(FASHION_MNIST_CLASSES)
    assert source.splits == ("train", "test") and source.mode == "L"
    assert len(source.labels("train")) == 120
    image = source.load("test", 7)
    assert image.size == (28, 28) and image.getpixel((0, 0)) == source.labels("test")[7]


# --- image folder --------------------------------------------------------------------------

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _two_tone(size=(40, 20), mark: int = 0) -> Image.Image:
    """Left half red, right half blue; ``mark`` != 0 greys a 4 x 4 block in the middle of the red
    half (files that stay distinct after resize + centre crop)."""
    im = Image.new("RGB", size, BLUE)
    im.paste(RED, (0, 0, size[0] // 2, size[1]))
    if mark:
        x, y = size[0] // 4 + 2, size[1] // 2 - 2
        im.paste((mark, mark, mark), (x, y, x + 4, y + 4))
    return im


def _write_mixed_class(folder: Path) -> None:
    """Five files in five awkward formats: EXIF-rotated JPEG, CMYK JPEG, palette+tRNS, RGBA, grey."""
    folder.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    _two_tone().save(folder / "rotated.JPG", "JPEG", exif=exif.tobytes(), quality=95)
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(folder / "cmyk.jpg", "JPEG")
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (5, 0, 10, 10))  # right half green, left half transparent index 0
    pal.save(folder / "palette.png", transparency=0)
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 5, 10))
    rgba.save(folder / "rgba.png")
    Image.new("L", (9, 7), 128).save(folder / "grey.png")


@pytest.fixture
def photo_root(tmp_path) -> Path:
    """ROOT/<class>/* with 5 images per class in every supported format."""
    root = tmp_path / "photos"
    _write_mixed_class(root / "Cat")
    bear = root / "Polar Bear"
    bear.mkdir(parents=True)
    # the same picture in five formats, each file marked apart: no exact copies across the splits
    _two_tone(mark=10).save(bear / "a.webp", "WEBP", lossless=True)
    _two_tone(mark=60).convert("RGBA").save(bear / "b.WebP", "WEBP")
    _two_tone(mark=110).save(bear / "c.bmp")
    _two_tone(mark=160).convert("P").save(bear / "d.gif")
    _two_tone(mark=210).save(bear / "e.tiff")
    (bear / "notes.txt").write_text("not an image")
    (bear / ".hidden.jpg").write_bytes(b"macOS resource fork")
    dog = root / "dog"
    dog.mkdir()
    for i in range(5):
        Image.new("RGB", (12 + i, 10), (i * 40, 100, 50)).save(dog / f"dog{i}.jpg")
    (root / "unused_empty_class").mkdir()
    return root


def folder_params(root: Path, **overrides) -> PrepareParams:
    base = dict(source="image_folder", root=str(root), classes=["cat", "polar_bear", "dog"],
                train_per_class=3, val_per_class=1, test_per_class=1)  # fmt: skip
    return make_params(**{**base, **overrides})


def _by_origin(out: Path) -> dict[str, dict]:
    return {r["origin"]: r for rows in manifests(out).values() for r in rows}


def test_image_folder_every_format_becomes_rgb(photo_root, tmp_path):
    out = tmp_path / "out"
    stats = prepare_real(folder_params(photo_root), out)
    assert stats["total"] == {"train": 9, "val": 3, "test": 3}
    assert stats["source"] == "image_folder" and stats["test_from"] == "pool"
    assert json.loads((out / "classes.json").read_text())["mode"] == "RGB"
    recs = _by_origin(out)
    assert len(recs) == 15  # every file used once: the pool split is disjoint
    for r in recs.values():
        with Image.open(r["path"]) as im:
            assert im.format == "PNG" and im.mode == "RGB" and not im.info.get("transparency")

    def px(origin, xy):
        with Image.open(recs[origin]["path"]) as im:
            return im.getpixel(xy)

    # EXIF orientation 6 applied: 40x20 stored -> 20x40 shown, the red left half now on top
    with Image.open(recs["Cat/rotated.JPG"]["path"]) as im:
        assert im.size == (20, 40)
    top, bottom = px("Cat/rotated.JPG", (10, 5)), px("Cat/rotated.JPG", (10, 35))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    r, g, b = px("Cat/cmyk.jpg", (8, 6))
    assert r > 200 and g < 60 and b < 60  # C=0 M=255 Y=255 is red
    assert px("Cat/palette.png", (1, 1)) == (255, 255, 255)  # transparent -> white
    assert px("Cat/palette.png", (8, 1)) == (0, 255, 0)
    assert px("Cat/rgba.png", (8, 1)) == (255, 255, 255) and px("Cat/rgba.png", (1, 1)) == (0, 0, 255)
    assert px("Cat/grey.png", (0, 0)) == (128, 128, 128)
    assert px("Polar Bear/a.webp", (1, 1)) == RED
    assert "Polar Bear/notes.txt" not in recs and "Polar Bear/.hidden.jpg" not in recs
    assert recs["Polar Bear/a.webp"]["label"] == "polar_bear"
    assert Path(recs["Polar Bear/a.webp"]["path"]).name == "a.png"


def test_image_folder_resize_to_square(photo_root, tmp_path):
    out = tmp_path / "out"
    prepare_real(folder_params(photo_root, image_size=8), out)
    for r in _by_origin(out).values():
        with Image.open(r["path"]) as im:
            assert im.size == (8, 8) and im.mode == "RGB"


def test_resize_center_crop_keeps_the_centre():
    im = Image.new("RGB", (60, 20), RED)
    im.paste(BLUE, (20, 0, 40, 20))  # blue centre third
    small = resize_center_crop(im, 10)
    assert small.size == (10, 10) and small.getpixel((5, 5)) == BLUE


def test_image_folder_deterministic(photo_root, tmp_path):
    params = folder_params(photo_root)
    prepare_real(params, tmp_path / "a")
    prepare_real(params, tmp_path / "b")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_corrupt_file_is_named(photo_root, tmp_path):
    (photo_root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (8, 8)).save(photo_root / "Polar Bear" / "f.png")
    # 6 files, 6 needed: the broken one is certainly read
    with pytest.raises(DataError) as err:
        prepare_real(folder_params(photo_root, classes=["dog", "polar_bear"], train_per_class=4), tmp_path / "o")
    assert "broken.jpg" in str(err.value) and "prepare.skip_corrupt" in str(err.value)


def test_truncated_jpeg_is_corrupt(photo_root, tmp_path):
    data = (photo_root / "dog" / "dog0.jpg").read_bytes()
    (photo_root / "dog" / "dog0.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="dog0.jpg"):
        prepare_real(folder_params(photo_root), tmp_path / "out")


def test_skip_corrupt_counts_and_skips(photo_root, tmp_path):
    (photo_root / "dog" / "broken.jpg").write_bytes(b"garbage")
    seen = set()
    for seed in range(6):  # the broken file is read unless it is drawn last
        out = tmp_path / f"out{seed}"
        stats = prepare_real(folder_params(photo_root, skip_corrupt=True, seed=seed), out)
        assert stats["counts"]["train"]["dog"] == 3 and stats["total"]["test"] == 3
        assert "dog/broken.jpg" not in _by_origin(out)
        seen.add(stats["skipped_corrupt"])
    assert seen <= {0, 1} and 1 in seen


def test_skip_corrupt_still_needs_enough_readable_images(photo_root, tmp_path):
    (photo_root / "dog" / "broken.jpg").write_bytes(b"garbage")
    Image.new("RGB", (8, 8)).save(photo_root / "Polar Bear" / "f.png")
    params = folder_params(photo_root, classes=["dog", "polar_bear"], skip_corrupt=True, train_per_class=4)
    with pytest.raises(DataError) as err:
        prepare_real(params, tmp_path / "out")
    assert "1 unreadable" in str(err.value) and "'dog'" in str(err.value)


def test_image_folder_missing_class_lists_folders(photo_root, tmp_path):
    params = make_params(source="image_folder", root=str(photo_root), classes=["cat", "horse"])
    with pytest.raises(DataError) as err:
        prepare_real(params, tmp_path / "out")
    msg = str(err.value)
    assert "'horse'" in msg and "'Polar Bear'" in msg and "'dog'" in msg


def test_image_folder_empty_class_dir(photo_root, tmp_path):
    params = make_params(source="image_folder", root=str(photo_root), classes=["cat", "unused_empty_class"])
    with pytest.raises(DataError) as err:
        prepare_real(params, tmp_path / "out")
    msg = str(err.value)
    assert "holds no images" in msg and "Cat (5 images)" in msg


def test_image_folder_not_enough_images(photo_root, tmp_path):
    with pytest.raises(DataError) as err:
        prepare_real(folder_params(photo_root, test_per_class=2), tmp_path / "out")
    msg = str(err.value)
    assert "has 5 images" in msg and "6 are needed" in msg and "prepare.test_per_class" in msg


def test_image_folder_same_stem_different_suffix(tmp_path):
    root = tmp_path / "p"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / cls / "x.png")
        Image.new("RGB", (4, 4)).save(root / cls / "x.jpg")
    source = ImageFolderSource(root, ["a", "b"])
    assert sorted({source.stem("pool", i) for i in range(4)}) == ["x.jpg", "x.png"]


# --- leakage: exact copies across the splits ------------------------------------------------


def test_planted_copies_across_splits_are_refused_or_dropped_from_the_later_split(tmp_path):
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "bird"):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{cls}{i}.png")
    params = folder_params(root, classes=["cat", "dog", "bird"])
    clean = prepare_real(params, tmp_path / "clean")
    assert clean["duplicates"] == {"policy": "error", "dropped": {"train": 0, "val": 0, "test": 0}, "total_dropped": 0}
    split_of = {r["origin"]: s for s, rows in manifests(tmp_path / "clean").items() for r in rows}

    def pick(cls, split):
        return next(o for o, s in sorted(split_of.items()) if s == split and o.startswith(cls + "/"))

    # plant: a test cat is a copy of a train cat; a val dog is a copy of a train bird (another class)
    test_cat, train_cat = pick("cat", "test"), pick("cat", "train")
    val_dog, train_bird = pick("dog", "val"), pick("bird", "train")
    (root / test_cat).write_bytes((root / train_cat).read_bytes())
    (root / val_dog).write_bytes((root / train_bird).read_bytes())
    # the selection depends on names, not contents: the copies land in the same splits again
    with pytest.raises(DataError) as err:
        prepare_real(params, tmp_path / "refused")
    msg = str(err.value)
    assert f"test/cat: {test_cat} = train/cat: {train_cat}" in msg
    assert f"val/dog: {val_dog} = train/bird: {train_bird}" in msg
    assert "prepare.duplicates: drop" in msg and msg.startswith("2 real image(s)")

    out = tmp_path / "dropped"
    stats = prepare_real(folder_params(root, classes=["cat", "dog", "bird"], duplicates="drop"), out)
    assert stats["duplicates"] == {"policy": "drop", "dropped": {"train": 0, "val": 1, "test": 1}, "total_dropped": 1 + 1}
    assert stats["total"] == {"train": 9, "val": 2, "test": 2}
    assert stats["counts"]["test"]["cat"] == 0 and stats["counts"]["val"]["dog"] == 0
    rows = manifests(out)
    origins = {r["origin"] for rs in rows.values() for r in rs}
    assert test_cat not in origins and val_dog not in origins and {train_cat, train_bird} <= origins
    hashes = {s: {r["sha256"] for r in rs} for s, rs in rows.items()}
    assert not hashes["train"] & hashes["val"] and not (hashes["train"] | hashes["val"]) & hashes["test"]
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png")}
    assert on_disk == {Path(r["path"]).relative_to(out.resolve()).as_posix() for rs in rows.values() for r in rs}


# --- the stage script ----------------------------------------------------------------------


def test_stage_script_writes_metrics_and_reports_errors(fake_fmnist, tmp_path):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["prepare"].update(root=str(fake_fmnist), train_per_class=3, val_per_class=1, test_per_class=2,
                          classes=["trouser", "bag"])  # fmt: skip
    raw["fewshot"]["shots"] = [1, 2]  # the few-shot branch may not ask for more than train_per_class
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, str(REPO / "stages" / "prepare.py"), "--params", str(params),
           "--out", str(tmp_path / "real"), "--metrics", str(tmp_path / "m" / "prepare.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "m" / "prepare.json").read_text())
    assert metrics["total"] == {"train": 6, "val": 2, "test": 4}

    raw["prepare"]["classes"] = ["trouser", "zebra"]
    params.write_text(yaml.safe_dump(raw))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "'zebra'" in done.stderr and "Traceback" not in done.stderr
