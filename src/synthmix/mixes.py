"""Training mixes of real and synthetic images, as manifests (no image is copied).

Mixes are named by integer percentages (floats in DVC stage names are fragile); one
:class:`MixSpec` parses every name and does all the count arithmetic:

- ``pctN``: a fixed total of ``per_class`` images per class, ``round_half_up(per_class * N / 100)``
  of them synthetic and the rest real (the animal study's 0:10, 5:5, 6:4, 7:3, 8:2 and the
  thesis's synthetic-only 100);
- ``augN``: every real training image plus ``round_half_up(n_real * N / 100)`` synthetic ones
  per class (the thesis's augmentation table: 5000 real + 1000..5000 synthetic = aug20..aug100);
- ``repN`` / ``addN``: the segmentation branch's counterparts over image/mask pairs: the real
  train size with N % of it replaced by synthetic pairs, or every real pair plus N % as many
  synthetic ones.

Which images are taken is a fixed per-class permutation (seeded by ``mix.seed`` and the
class name) cut at the needed count. The permutation does not depend on the mix, so the
mixes are nested: pct80's real images are a subset of pct60's, and pct60's synthetic images
a subset of pct80's. Differences between ratios then come from the ratio, not from which
images happened to be drawn.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from synthmix.core.errors import DataError, ParamsError
from synthmix.core.seeding import derive_seed
from typing import TYPE_CHECKING

from synthmix.core.stage import Input, Output

if TYPE_CHECKING:
    from synthmix.config import Params

log = logging.getLogger(__name__)

CLASSIFICATION_KINDS = ("pct", "aug")
SEGMENTATION_KINDS = ("rep", "add")
_NAME = re.compile(r"^(pct|aug|rep|add)(\d+)$")
_FIXED_TOTAL = ("pct", "rep")  # kinds that keep the training-set size and replace a share of it
_HELP = {
    CLASSIFICATION_KINDS: "must be pctN (N % synthetic at a fixed total, 0..100) "
    "or augN (all real plus N % as many synthetic images)",
    SEGMENTATION_KINDS: "must be repN (N % of real pairs replaced, 0..100) or addN "
    "(all real pairs plus N % as many synthetic ones)",
}


class MixNameError(ParamsError, ValueError):
    """A mix name that is not one of the allowed kinds (a ValueError too, for the params schema)."""


def percent_of(n: int, pct: int) -> int:
    """``round_half_up(n * pct / 100)`` in integers: 50 % of 225 = 113."""
    return (n * pct + 50) // 100


@dataclass(frozen=True)
class MixSpec:
    """A parsed mix name: ``kind`` (pct, aug, rep, add) and its integer percentage ``value``."""

    kind: str
    value: int

    @classmethod
    def parse(cls, name: str, kinds: tuple[str, ...] = CLASSIFICATION_KINDS) -> "MixSpec":
        m = _NAME.match(name)
        if not m or m.group(1) not in kinds:
            raise MixNameError(f"mix name {name!r} {_HELP[kinds]}")
        spec = cls(m.group(1), int(m.group(2)))
        if spec.kind in _FIXED_TOTAL and spec.value > 100:
            raise MixNameError(f"mix name {name!r}: a percentage of synthetic images is at most 100")
        return spec

    @property
    def name(self) -> str:
        return f"{self.kind}{self.value}"

    def counts(self, total: int, n_real: int) -> tuple[int, int]:
        """(real, synthetic) items: ``total`` is the fixed size of pct/rep mixes, ``n_real`` the
        real items available (all of them go into aug/add mixes)."""
        if self.kind in _FIXED_TOTAL:
            fake = percent_of(total, self.value)
            return total - fake, fake
        return n_real, percent_of(n_real, self.value)

    @property
    def fake_share(self) -> float:
        """Nominal share of synthetic items: N / 100 at a fixed total, N / (100 + N) when added."""
        return self.value / 100.0 if self.kind in _FIXED_TOTAL else self.value / (100.0 + self.value)

    @property
    def ratio_label(self) -> str:
        """The fake:real ratio as the source papers write it: ``"60:40"``, or ``"real + 100 %"``."""
        return f"{self.value}:{100 - self.value}" if self.kind in _FIXED_TOTAL else f"real + {self.value} %"


def check_names(names: list[str], kinds: tuple[str, ...]) -> list[str]:
    """Validate a list of mix names (unique, each of ``kinds``); a ValueError for the schema."""
    for name in names:
        MixSpec.parse(name, kinds)
    if len(set(names)) != len(names):
        raise ValueError(f"mix names must be unique: {names}")
    return names


def mix_counts(name: str, per_class: int, n_real: int) -> tuple[int, int]:
    """(real, synthetic) images per class for classification mix ``name``."""
    return MixSpec.parse(name).counts(per_class, n_real)


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


def build_seg_mix(name: str, real: list[dict], synthetic: list[dict], seed: int) -> list[dict]:
    """The pairs of segmentation mix ``name``: a seeded subset of the real pairs plus the first synthetic ones."""
    if not real:
        raise DataError("the real train manifest lists no pairs: run seg_prepare")
    n_real, n_fake = MixSpec.parse(name, SEGMENTATION_KINDS).counts(len(real), len(real))
    if n_fake > len(synthetic):
        raise DataError(
            f"seg_mix {name} needs {n_fake} synthetic pairs but data/seg/synthetic holds {len(synthetic)}: "
            f"raise seg_generate_labels.count to at least {n_fake}"
        )
    order = np.random.default_rng(derive_seed("seg-mix", seed) % 2**63).permutation(len(real))
    keep = np.sort(order[len(real) - n_real :])
    return [dict(real[int(i)]) for i in keep] + [dict(r) for r in synthetic[:n_fake]]


def mix_stage(params: Params, name: str, *, real: Input, classes: Input, synthetic: Input, out: Output) -> None:
    """Stage mix: the manifest of training mix ``name`` (e.g. pct60, aug100) from the real train
    split and the synthetic images quality control kept."""
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import count_by_label, read_manifest, write_manifest

    if name not in params.mix.names:
        raise ParamsError(f"{name} is not one of mix.names {params.mix.names}")
    records = build_mix(
        name,
        real=read_manifest(real),
        synthetic=read_manifest(synthetic),
        classes=read_classes(classes),
        per_class=params.mix.per_class or params.prepare.train_per_class,
        seed=params.mix.seed,
    )
    write_manifest(out, records)
    print(f"{name}: {len(records)} images, per class {count_by_label(records)}")
