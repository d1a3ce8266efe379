"""Label-map post-processing, as the source describes it, and the encoding it relies on.

The label DDPM works on one grey channel in which class ``k`` of ``K`` is the level
``k * 255 / (K - 1)`` (:func:`label_levels`). A sampled map is therefore continuous, and two
kinds of artefact appear that a segmentation mask cannot hold:

- **ramp edges**: where two regions meet, the model draws a smooth transition, so pixels take
  values between two label levels; these pixels (farther than ``ramp_tolerance`` x the level
  spacing from every level) are *replaced by the most frequent label in their
  neighbourhood* (a ``neighbourhood`` x ``neighbourhood`` window, repeated inwards until
  every such pixel has a label);
- **label islands**: small speckles, and the thin strips a ramp leaves when it passes
  *through* an intermediate level (0 -> 255 crosses the level of class 1); a
  **morphological opening** of each class with the structuring element removes them, as does
  a minimum connected-component size (``min_island_size`` pixels); removed pixels are filled
  the same way from their neighbours.

The cleaned map is then **upsampled with nearest-neighbour** interpolation to the full image
size, so no new in-between values appear. :func:`postprocess` returns the map and a report
of how many ramp pixels, island pixels and islands were removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

UNKNOWN = -1


def label_levels(n_classes: int) -> np.ndarray:
    """The grey level of each class id in the DDPM's encoding (0 .. 255, evenly spaced)."""
    if n_classes < 2:
        raise ValueError("a label map needs at least 2 classes")
    return np.arange(n_classes, dtype=np.float64) * 255.0 / (n_classes - 1)


def encode_labels(ids: np.ndarray, n_classes: int, ignore_index: int) -> np.ndarray:
    """Class ids -> uint8 grey levels; ignored pixels are encoded as class 0 (background)."""
    ids = np.where(ids == ignore_index, 0, ids)
    return np.round(label_levels(n_classes)[ids]).astype(np.uint8)


def structuring_element(kind: str, size: int) -> np.ndarray:
    """A boolean element: ``square`` (size x size), ``cross`` (arms of length size//2 + 1) or ``disk``."""
    if kind == "square":
        return np.ones((size, size), bool)
    r = max(1, size // 2)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    if kind == "cross":
        return (yy == 0) | (xx == 0)
    if kind == "disk":
        return yy**2 + xx**2 <= r * r
    raise ValueError(f"unknown structuring element {kind!r} (square, cross, disk)")


def quantize(values: np.ndarray, n_classes: int, tolerance: float) -> np.ndarray:
    """Nearest class id of each grey value, or UNKNOWN where the value lies between two levels."""
    levels = label_levels(n_classes)
    spacing = 255.0 / (n_classes - 1)
    dist = np.abs(values.astype(np.float64)[..., None] - levels)
    ids = dist.argmin(-1).astype(np.int64)
    ids[dist.min(-1) > tolerance * spacing] = UNKNOWN
    return ids


def fill_from_neighbours(ids: np.ndarray, n_classes: int, neighbourhood: int) -> np.ndarray:
    """Give each UNKNOWN pixel the most frequent known label in its window; repeat inwards.

    Ties go to the lower class id. A map with no known pixel at all becomes class 0.
    """
    ids = ids.copy()
    window = np.ones((neighbourhood, neighbourhood), np.int32)
    while (ids == UNKNOWN).any():
        unknown = ids == UNKNOWN
        if unknown.all():
            ids[:] = 0
            break
        counts = np.stack([ndimage.convolve((ids == c).astype(np.int32), window, mode="constant") for c in range(n_classes)])
        best, have = counts.argmax(0), counts.max(0) > 0
        fill = unknown & have
        ids[fill] = best[fill]
    return ids


def remove_islands(ids: np.ndarray, n_classes: int, element: np.ndarray, min_island_size: int) -> tuple[np.ndarray, int]:
    """Mark as UNKNOWN the pixels an opening (or the size filter) removes from their class.

    Returns (map, number of connected islands that disappeared completely).
    """
    out = ids.copy()
    islands = 0
    for c in range(n_classes):
        region = ids == c
        if not region.any():
            continue
        kept = ndimage.binary_opening(region, structure=element)
        if min_island_size > 1 and kept.any():
            comp, n = ndimage.label(kept)
            sizes = np.bincount(comp.ravel(), minlength=n + 1)
            small = sizes < min_island_size
            small[0] = False
            kept &= ~small[comp]
        removed = region & ~kept
        if removed.any():
            comp, n = ndimage.label(region)
            survivors = np.unique(comp[kept])
            islands += n - int((survivors > 0).sum())
            out[removed] = UNKNOWN
    return out, islands


@dataclass
class Report:
    ramp_pixels: int = 0
    island_pixels: int = 0
    islands_removed: int = 0
    pixels: int = 0

    def add(self, other: "Report") -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ramp_share"] = round(self.ramp_pixels / max(1, self.pixels), 6)
        d["island_share"] = round(self.island_pixels / max(1, self.pixels), 6)
        return d


def upsample(ids: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of an id map to ``size`` x ``size`` (no new values appear)."""
    if ids.shape == (size, size):
        return ids.astype(np.uint8)
    return np.asarray(Image.fromarray(ids.astype(np.uint8), mode="L").resize((size, size), Image.Resampling.NEAREST))


def postprocess(
    values: np.ndarray,
    n_classes: int,
    out_size: int,
    ramp_tolerance: float = 0.25,
    element: np.ndarray | None = None,
    min_island_size: int = 0,
    neighbourhood: int = 3,
) -> tuple[np.ndarray, Report]:
    """A sampled grey label map ``(h, w)`` -> a clean uint8 id mask ``(out_size, out_size)`` + report."""
    if values.ndim != 2:
        raise ValueError(f"expected one (h, w) map, got shape {values.shape}")
    element = structuring_element("square", 2) if element is None else element
    ids = quantize(values, n_classes, ramp_tolerance)
    report = Report(ramp_pixels=int((ids == UNKNOWN).sum()), pixels=int(ids.size))
    ids, report.islands_removed = remove_islands(ids, n_classes, element, min_island_size)
    report.island_pixels = int((ids == UNKNOWN).sum()) - report.ramp_pixels
    ids = fill_from_neighbours(ids, n_classes, neighbourhood)
    return upsample(ids, out_size), report
