"""Training mixes of real and synthetic images, as manifests (no image is copied).

Mix names and their count arithmetic are :class:`synthmix.config.mixnames.MixSpec`:

- ``pctN``: a fixed total of ``per_class`` images per class, ``round_half_up(per_class * N / 100)``
  of them synthetic and the rest real (the animal study's 0:10, 5:5, 6:4, 7:3, 8:2 and the
  thesis's synthetic-only 100);
- ``augN``: every real training image plus ``round_half_up(n_real * N / 100)`` synthetic ones
  per class (the thesis's augmentation table: 5000 real + 1000..5000 synthetic = aug20..aug100);
- ``lrrN`` / ``grrN`` (swap mixes, DA-Fusion's training-time replacement): the real images of
  ``pct0`` (``per_class`` per class, the same images), each of which the training loop swaps, per
  draw (per sample and epoch), with probability N / 100 for a synthetic image: one of the
  image-to-image variants *of the same real image* (``lrr``, matched on the variant's
  ``source_sha256``) or any synthetic image of the same class (``grr``). The manifest lists the
  real images (``role: real``) and the candidates (``role: candidate``); :class:`SwapPlan` turns
  it into the per-epoch draws. ``lrr0`` / ``grr0`` swap nothing and hold exactly pct0's records;
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
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from synthmix.config.mixnames import ROLE_CANDIDATE, ROLE_REAL, SEGMENTATION_KINDS, MixSpec, mix_counts
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed

if TYPE_CHECKING:
    from synthmix.config.loading import Params

log = logging.getLogger(__name__)


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
    spec = MixSpec.parse(name)
    if spec.is_swap:
        return build_swap_mix(spec, real, synthetic, classes, per_class, seed)
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


def build_swap_mix(
    spec: MixSpec, real: list[dict], synthetic: list[dict], classes: list[str], per_class: int, seed: int
) -> list[dict]:
    """The records of swap mix ``spec`` (lrrN / grrN): per class, pct0's real images
    (``role: real``) followed by the synthetic images they may be swapped for (``role: candidate``):
    the variants of those very images (lrr: ``source_sha256`` = a chosen real image's ``sha256``)
    or every synthetic image of the class (grr). With N = 0, pct0's records unchanged."""
    name = spec.name
    if spec.value == 0:
        return build_mix("pct0", real, synthetic, classes, per_class, seed)
    if spec.kind == "lrr" and not any(r.get("source_sha256") for r in synthetic):
        generators = sorted({str(r.get("generator", r.get("source", "?"))) for r in synthetic}) or ["none"]
        raise DataError(
            f"lrr mixes need image-to-image variants: mix {name} swaps each real image for a synthetic "
            "variant of that same image, matched on the variant's source_sha256, but no record of the "
            f"synthetic set (generator {', '.join(generators)}, {len(synthetic)} images) has a source_sha256. "
            "Generate variants of the real training images with generate.mode: img2img (DA-Fusion's "
            f"generate.img2img settings), or use grr{spec.value} (any synthetic image of the same class)"
        )
    real_by_class, fake_by_class = _by_class(real), _by_class(synthetic)
    out: list[dict] = []
    for cls in classes:
        reals, fakes = real_by_class.get(cls, []), fake_by_class.get(cls, [])
        if per_class > len(reals):
            raise DataError(
                f"mix {name} needs {per_class} real images of class {cls!r} but the real train split "
                f"has {len(reals)}: raise prepare.train_per_class or lower mix.per_class"
            )
        chosen = _take(reals, per_class, seed, cls, "real")  # pct0's images
        if spec.kind == "lrr":
            shas = {r["sha256"] for r in chosen}
            candidates = [f for f in fakes if f.get("source_sha256") in shas]
            covered = {f["source_sha256"] for f in candidates}
            if not candidates:
                raise DataError(
                    f"mix {name}: the synthetic set has no variant of any of the {len(chosen)} real images of "
                    f"class {cls!r} in the mix (source_sha256 matches none): generate image-to-image variants "
                    "of the real train split with generate.mode: img2img"
                )
            if len(covered) < len(chosen):
                log.warning("mix %s, class %s: %d of %d real images have no variant and are never swapped",
                            name, cls, len(chosen) - len(covered), len(chosen))
        else:
            candidates = fakes
            if not candidates:
                raise DataError(
                    f"mix {name} swaps real images of class {cls!r} for synthetic ones, but the synthetic "
                    "set has none of that class: raise generate.per_class"
                )
        out += [{**r, "role": ROLE_REAL} for r in chosen]
        out += [{**f, "role": ROLE_CANDIDATE} for f in candidates]
        log.info("mix %s, class %s: %d real, %d swap candidates", name, cls, len(chosen), len(candidates))
    return out


@dataclass(frozen=True)
class SwapPlan:
    """The training-time swaps of a swap mix (DA-Fusion's per-draw replacement).

    ``n_real`` training samples (the ``role: real`` records, in manifest order); the candidates
    of sample ``i`` are ``candidates[offsets[i]:offsets[i + 1]]`` (positions among the
    ``role: candidate`` records). :meth:`draw` decides every epoch anew, per sample, whether it
    is swapped (probability ``probability``) and for which of its candidates (uniformly), from a
    generator seeded by (training seed, epoch): a run is reproducible and independent of the
    batch order. A sample without candidates is never swapped.
    """

    kind: str
    probability: float
    n_real: int
    offsets: np.ndarray  # int64, n_real + 1
    candidates: np.ndarray  # int64 candidate positions

    @classmethod
    def from_records(cls, spec: MixSpec, reals: list[dict], candidates: list[dict]) -> "SwapPlan":
        """Group ``candidates`` per real record: same ``source_sha256`` as its ``sha256`` (lrr) or
        same ``label`` (grr)."""
        if spec.kind == "lrr":
            keyed = defaultdict(list)
            for j, c in enumerate(candidates):
                keyed[(c.get("source_sha256"), c["label"])].append(j)
            groups = [keyed.get((r["sha256"], r["label"]), []) for r in reals]
        else:
            keyed = defaultdict(list)
            for j, c in enumerate(candidates):
                keyed[c["label"]].append(j)
            groups = [keyed.get(r["label"], []) for r in reals]
        offsets = np.zeros(len(reals) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(g) for g in groups])
        flat = np.fromiter((j for g in groups for j in g), dtype=np.int64, count=int(offsets[-1]))
        return cls(spec.kind, spec.swap_probability, len(reals), offsets, flat)

    @property
    def coverage(self) -> float:
        """Share of the real samples that have at least one candidate."""
        return float((np.diff(self.offsets) > 0).mean()) if self.n_real else 0.0

    def draw(self, seed: int, epoch: int) -> np.ndarray:
        """Per real sample: -1 (kept) or the candidate position swapped in for epoch ``epoch``."""
        rng = np.random.default_rng(derive_seed("swap", int(seed), int(epoch)))
        u_swap, u_pick = rng.random(self.n_real), rng.random(self.n_real)
        counts = np.diff(self.offsets)
        swap = (u_swap < self.probability) & (counts > 0)
        out = np.full(self.n_real, -1, dtype=np.int64)
        pick = self.offsets[:-1][swap] + np.minimum((u_pick[swap] * counts[swap]).astype(np.int64), counts[swap] - 1)
        out[swap] = self.candidates[pick]
        return out


def split_swap_mix(name: str | None, records: list[dict]) -> tuple[list[dict], list[dict], "SwapPlan | None"]:
    """(training samples, swap candidates, plan) of a mix manifest. For a swap mix (lrr/grr) the
    ``role: candidate`` records are the candidates; any other mix (or ``name`` None) must have
    none: its records are the training samples and the plan is None."""
    spec = MixSpec.parse(name) if name is not None else None
    candidates = [r for r in records if r.get("role") == ROLE_CANDIDATE]
    reals = [r for r in records if r.get("role") != ROLE_CANDIDATE]
    if spec is None or not spec.is_swap:
        if candidates:
            raise DataError(
                f"the training manifest has {len(candidates)} swap candidates (role: candidate) but "
                f"{'no mix name was given' if spec is None else f'mix {name} is not a swap mix (lrrN / grrN)'}"
            )
        return records, [], None
    return reals, candidates, SwapPlan.from_records(spec, reals, candidates)


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
    order = np.random.default_rng(derive_seed("seg-mix", seed)).permutation(len(real))
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
    candidates = [r for r in records if r.get("role") == ROLE_CANDIDATE]
    if candidates:
        reals = [r for r in records if r.get("role") != ROLE_CANDIDATE]
        print(f"{name}: {len(reals)} real images, per class {count_by_label(reals)}, swapped per draw with "
              f"probability {MixSpec.parse(name).swap_probability:g} for one of {len(candidates)} candidates")
    else:
        print(f"{name}: {len(records)} images, per class {count_by_label(records)}")
