"""Training mixes of real and synthetic images, as manifests (no image is copied).

Two kinds, named by integer percentages (floats in DVC stage names are fragile):

- ``pctN``: a fixed total of ``per_class`` images per class, ``round_half_up(per_class * N / 100)``
  of them synthetic and the rest real (the animal study's 0:10, 5:5, 6:4, 7:3, 8:2 and the
  thesis's synthetic-only 100);
- ``augN``: every real training image plus ``round_half_up(n_real * N / 100)`` synthetic ones
  per class (the thesis's augmentation table: 5000 real + 1000..5000 synthetic = aug20..aug100).

Which images are taken is a fixed per-class permutation (seeded by ``mix.seed`` and the
class name) cut at the needed count. The permutation does not depend on the mix, so the
mixes are nested: pct80's real images are a subset of pct60's, and pct60's synthetic images
a subset of pct80's. Differences between ratios then come from the ratio, not from which
images happened to be drawn.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from .errors import DataError
from .params import fake_count, parse_mix_name
from .seeding import derive_seed

log = logging.getLogger(__name__)


def mix_counts(name: str, per_class: int, n_real: int) -> tuple[int, int]:
    """(real, synthetic) images per class for mix ``name``.

    ``per_class`` is the fixed total of a pctN mix; ``n_real`` the real images of the class
    (all of them go into an augN mix).
    """
    kind, value = parse_mix_name(name)
    if kind == "pct":
        fake = fake_count(per_class, name)
        return per_class - fake, fake
    return n_real, (n_real * value + 50) // 100


def _by_class(records: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in sorted(records, key=lambda r: r["path"]):
        groups[rec["label"]].append(rec)
    return groups


def _take(records: list[dict], count: int, seed: int, class_name: str, pool: str) -> list[dict]:
    rng = np.random.default_rng(derive_seed("mix", seed, pool, class_name))
    order = rng.permutation(len(records))
    return [records[i] for i in sorted(order[:count])]


def build_mix(
    name: str,
    real: list[dict],
    synthetic: list[dict],
    classes: list[str],
    per_class: int,
    seed: int,
) -> list[dict]:
    """The records of mix ``name``, class by class in ``classes`` order, real before synthetic."""
    real_by_class, fake_by_class = _by_class(real), _by_class(synthetic)
    out: list[dict] = []
    for cls in classes:
        reals, fakes = real_by_class.get(cls, []), fake_by_class.get(cls, [])
        n_real, n_fake = mix_counts(name, per_class, len(reals))
        if n_real > len(reals):
            raise DataError(
                f"mix {name} needs {n_real} real images of class {cls!r} but the real train split "
                f"has {len(reals)}: raise prepare.train_per_class or lower mix.per_class"
            )
        if n_fake > len(fakes):
            raise DataError(
                f"mix {name} needs {n_fake} synthetic images of class {cls!r} but the synthetic "
                f"set has {len(fakes)}: raise generate.per_class to at least {n_fake}"
            )
        out += _take(reals, n_real, seed, cls, "real")
        out += _take(fakes, n_fake, seed, cls, "synthetic")
        log.info("mix %s, class %s: %d real + %d synthetic", name, cls, n_real, n_fake)
    extra = sorted({r["label"] for r in real + synthetic} - set(classes))
    if extra:
        log.warning("mix %s ignores images of classes not in prepare.classes: %s", name, extra)
    return out
