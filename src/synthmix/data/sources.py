"""Real image sources: labelled images per official split, read lazily.

Three kinds, chosen by ``prepare.source``:

- ``fashion_mnist_debian``: the IDX files of the Debian package ``dataset-fashion-mnist``
  (parsed directly; no torchvision needed);
- ``torchvision``: CIFAR-10, STL-10 (labelled train/test) or Fashion-MNIST read (or
  downloaded) by torchvision into ``prepare.root``;
- ``image_folder``: your own photos in ``prepare.root/<class>/*``, one pool with no official
  test split.

Every source exposes the same small interface (:class:`ImageSource`): the dataset's class
names in label order, the official split names, a label array per split and lazy access to
image ``i`` of a split, so only the images actually selected are decoded.

Class names are matched after :func:`normalize_name` ("T-shirt/top" = "t_shirt_top").
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from synthmix.core.errors import DataError, MissingAssetError
from synthmix.data.images import IMAGE_SUFFIXES, load_rgb

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# The official Debian / Zalando file names; an unpacked copy (no ".gz") is accepted too.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TORCHVISION_DATASETS = ("cifar10", "stl10", "fashion_mnist")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize_name(name: str) -> str:
    """Lowercase, each run of non-alphanumerics becomes "_", stripped: "T-shirt/top" -> "t_shirt_top"."""
    return _NON_ALNUM.sub("_", str(name).lower()).strip("_")


def match_classes(requested: Sequence[str], available: Sequence[str], where: str) -> list[int]:
    """Index in ``available`` of each requested class, compared by :func:`normalize_name`.

    A missing class raises DataError listing the classes ``where`` (a dataset or folder) has.
    """
    index: dict[str, int] = {}
    for i, name in enumerate(available):
        index.setdefault(normalize_name(name), i)
    missing = [c for c in requested if normalize_name(c) not in index]
    if missing:
        found = ", ".join(repr(n) for n in available) or "none"
        raise DataError(
            f"prepare.classes: {', '.join(repr(c) for c in missing)} not found in {where}; "
            f"classes found: {found} (names are compared lowercased, with any run of "
            "non-alphanumerics read as '_')"
        )
    return [index[normalize_name(c)] for c in requested]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array.

    Checks the magic number (two zero bytes, a type code, the number of dimensions) and that
    the data size matches the dimensions; a corrupt or truncated file raises DataError naming it.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc} (the file is corrupt or truncated)") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({expected} data bytes) but the file holds "
            f"{len(raw) - header}: the file is corrupt or truncated"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("=")) if dtype.byteorder == ">" else data


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic), then crop the centre ``size`` x ``size``."""
    w, h = image.size
    if (w, h) == (size, size):
        return image
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


class ImageSource:
    """Labelled images per official split, with lazy per-image access."""

    #: short description written to classes.json, e.g. "fashion_mnist_debian", "torchvision:cifar10"
    name: str
    #: PIL mode of every image: "L" (grey) or "RGB"
    mode: str
    #: the dataset's class names in label order
    class_names: list[str]
    #: official split names: ("train", "test"), or ("pool",) for an image folder
    splits: tuple[str, ...]

    @property
    def has_test(self) -> bool:
        return "test" in self.splits

    def labels(self, split: str) -> np.ndarray:
        """Class index (into :attr:`class_names`) of every image of ``split``."""
        raise NotImplementedError

    def load(self, split: str, index: int) -> Image.Image:
        """Image ``index`` of ``split``; an unreadable file raises DataError naming it."""
        raise NotImplementedError

    def origin(self, split: str, index: int) -> str:
        """Where the image came from, e.g. "fashion_mnist:train:12345" or "cat/IMG_0001.jpg"."""
        raise NotImplementedError

    def stem(self, split: str, index: int) -> str:
        """A file name stem for the image, unique within its split and class."""
        raise NotImplementedError


class ArraySource(ImageSource):
    """A dataset held as uint8 arrays (N x H x W grey, or N x H x W x 3 RGB) per official split."""

    def __init__(self, name: str, origin_prefix: str, class_names: Sequence[str],
                 arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:  # fmt: skip
        self.name = name
        self.origin_prefix = origin_prefix
        self.class_names = list(class_names)
        self.splits = tuple(arrays)
        self._arrays = arrays
        first = next(iter(arrays.values()))[0]
        self.mode = "L" if first.ndim == 3 else "RGB"
        for split, (images, labels) in arrays.items():
            if len(images) != len(labels):
                raise DataError(f"{name} {split}: {len(images)} images but {len(labels)} labels")

    def labels(self, split: str) -> np.ndarray:
        return self._arrays[split][1]

    def load(self, split: str, index: int) -> Image.Image:
        return Image.fromarray(np.ascontiguousarray(self._arrays[split][0][index]), mode=self.mode)

    def origin(self, split: str, index: int) -> str:
        return f"{self.origin_prefix}:{split}:{index}"

    def stem(self, split: str, index: int) -> str:
        return str(index)


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise MissingAssetError(
        f"Fashion-MNIST file {root / (stem + '.gz')} not found. Install the Debian package "
        "dataset-fashion-mnist (e.g. `make setup`, or `sudo apt-get install dataset-fashion-mnist`), "
        "point prepare.root at a folder holding the four *-ubyte.gz files, or set prepare.source "
        "to torchvision / image_folder"
    )


def load_fashion_mnist_debian(root: str | Path) -> ArraySource:
    """Fashion-MNIST train (60000) and test (10000) from the Debian package's IDX files in ``root``."""
    root = Path(root)
    arrays = {}
    for split, (image_stem, label_stem) in FASHION_MNIST_FILES.items():
        image_path, label_path = _find_idx(root, image_stem), _find_idx(root, label_stem)
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{image_path}: expected N x 28 x 28 uint8 images, got {images.shape} {images.dtype}")
        if labels.ndim != 1:
            raise DataError(f"{label_path}: expected a 1-D label array, got shape {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{label_path}: label {int(labels.max())} is out of range 0..9")
        log.info("read %d %s images from %s", len(images), split, image_path)
        arrays[split] = (images, labels.astype(np.int64))
    return ArraySource("fashion_mnist_debian", "fashion_mnist", FASHION_MNIST_CLASSES, arrays)


def load_torchvision(dataset: str, root: str | Path, download: bool = False) -> ArraySource:
    """CIFAR-10, STL-10 (labelled train/test splits) or Fashion-MNIST through torchvision."""
    if dataset not in TORCHVISION_DATASETS:
        raise DataError(f"prepare.dataset = {dataset!r}: allowed are {', '.join(TORCHVISION_DATASETS)}")
    import torchvision.datasets as tvd  # lazy: importing torchvision is slow

    root = str(root)
    arrays = {}
    class_names: list[str] = []
    for split in ("train", "test"):
        try:
            if dataset == "cifar10":
                ds = tvd.CIFAR10(root, train=split == "train", download=download)
                images, labels = np.asarray(ds.data), np.asarray(ds.targets)
            elif dataset == "stl10":
                ds = tvd.STL10(root, split=split, download=download)
                images, labels = np.asarray(ds.data).transpose(0, 2, 3, 1), np.asarray(ds.labels)  # CHW -> HWC
            else:
                ds = tvd.FashionMNIST(root, train=split == "train", download=download)
                images, labels = ds.data.numpy(), ds.targets.numpy()
        except Exception as exc:  # not found, corrupt, or download failed (no network)
            hint = ""
            if dataset == "fashion_mnist":
                hint = (" For the offline Debian copy use prepare.source: fashion_mnist_debian with "
                        "prepare.root: /usr/share/datasets/fashion-mnist.")  # fmt: skip
            cause = f"{type(exc).__name__}: {str(exc).strip()}"
            if download:
                msg = (f"torchvision dataset {dataset} could not be downloaded into prepare.root = {root} "
                       f"({cause}); this machine may have no internet access. Download it elsewhere and copy "
                       "it under prepare.root, or choose another prepare.source.")  # fmt: skip
            else:
                msg = (f"torchvision dataset {dataset} ({split} split) was not found under prepare.root = "
                       f"{root} and prepare.download is false ({cause}). Set prepare.download: true on a "
                       "machine with internet access, put the dataset files under prepare.root, or choose "
                       "another prepare.source.")  # fmt: skip
            raise MissingAssetError(msg + hint) from exc
        class_names = list(ds.classes)
        arrays[split] = (images.astype(np.uint8, copy=False), labels.astype(np.int64))
        log.info("read %d %s images of torchvision %s from %s", len(images), split, dataset, root)
    return ArraySource(f"torchvision:{dataset}", dataset, class_names, arrays)


class ImageFolderSource(ImageSource):
    """Photos in ``root/<class>/*`` (one pool, no official test split), decoded only when loaded.

    Files are those directly inside each class folder whose suffix is a known image type
    (case-insensitive), sorted by name; hidden files (".*") are ignored. Images come out RGB
    (grey, RGBA, palette, CMYK converted; EXIF orientation applied) and, with ``image_size``,
    resized (shorter side, bicubic) and centre-cropped to a square.
    """

    splits = ("pool",)
    mode = "RGB"

    def __init__(self, root: str | Path, classes: Sequence[str], image_size: int | None = None) -> None:
        self.root = Path(root)
        self.name = "image_folder"
        self.image_size = image_size
        if not self.root.is_dir():
            raise DataError(
                f"prepare.root = {self.root} is not a directory: for prepare.source: image_folder it must "
                "hold one folder per class (ROOT/<class>/*.jpg, ...)"
            )
        dirs = sorted((p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name)  # fmt: skip
        by_norm: dict[str, list[Path]] = {}
        for d in dirs:
            by_norm.setdefault(normalize_name(d.name), []).append(d)
        wanted = match_classes(classes, [d.name for d in dirs], f"image folder {self.root}")
        self.class_names = [d.name for d in dirs]
        self._files: list[Path] = []
        labels: list[int] = []
        for cls, i in zip(classes, wanted):
            clashes = by_norm[normalize_name(dirs[i].name)]
            if len(clashes) > 1:
                raise DataError(
                    f"class {cls!r} matches several folders in {self.root}: "
                    f"{', '.join(d.name for d in clashes)}; rename or merge them"
                )
            files = self._image_files(dirs[i])
            if not files:
                raise DataError(self._empty_message(cls, dirs[i], dirs))
            self._files.extend(files)
            labels.extend([i] * len(files))
        self._labels = np.asarray(labels, dtype=np.int64)
        self._stems = self._unique_stems(self._files)

    @staticmethod
    def _image_files(folder: Path) -> list[Path]:
        return sorted(
            (p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()),
            key=lambda p: p.name,
        )  # fmt: skip

    def _empty_message(self, cls: str, folder: Path, dirs: list[Path]) -> str:
        others = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        found = ", ".join(f"{d.name} ({len(self._image_files(d))} images)" for d in dirs)
        msg = f"image folder {folder} (class {cls!r}) holds no images"
        if others:
            msg += f" with a supported suffix ({' '.join(IMAGE_SUFFIXES)}); it has e.g. {', '.join(others[:5])}"
        return f"{msg}. Classes found in {self.root}: {found}"

    @staticmethod
    def _unique_stems(files: list[Path]) -> list[str]:
        """File stems, or the full name where two files in a folder share a stem (a.jpg, a.png)."""
        seen: dict[tuple[Path, str], int] = {}
        for p in files:
            key = (p.parent, p.stem.lower())
            seen[key] = seen.get(key, 0) + 1
        return [p.stem if seen[(p.parent, p.stem.lower())] == 1 else p.name for p in files]

    def labels(self, split: str) -> np.ndarray:
        return self._labels

    def load(self, split: str, index: int) -> Image.Image:
        image = load_rgb(self._files[index])
        if self.image_size:
            image = resize_center_crop(image, self.image_size)
        return image

    def origin(self, split: str, index: int) -> str:
        return self._files[index].relative_to(self.root).as_posix()

    def stem(self, split: str, index: int) -> str:
        return self._stems[index]


def open_source(params) -> ImageSource:
    """The source that ``params`` (a :class:`synthmix.config.PrepareParams`) names."""
    if params.image_size and params.source != "image_folder":
        log.warning("prepare.image_size = %s is ignored for prepare.source = %s (image_folder only)",
                    params.image_size, params.source)  # fmt: skip
    if params.source == "fashion_mnist_debian":
        source = load_fashion_mnist_debian(params.root)
    elif params.source == "torchvision":
        source = load_torchvision(params.dataset, params.root, params.download)
    elif params.source == "image_folder":
        return ImageFolderSource(params.root, params.classes, params.image_size)
    else:
        raise DataError(f"prepare.source = {params.source!r} is not a known source")
    match_classes(params.classes, source.class_names, source.name)
    return source
