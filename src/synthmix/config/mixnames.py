"""The grammar of mix names (``pctN``, ``augN``, ``lrrN``, ``grrN``; ``repN``, ``addN`` for
segmentation) and their count arithmetic, in one place: the params schema validates names with
it and :mod:`synthmix.mixes` builds the mixes from it.

- ``pctN``: a fixed total of ``per_class`` images per class, ``round_half_up(per_class * N / 100)``
  of them synthetic and the rest real;
- ``augN``: every real training image plus ``round_half_up(n_real * N / 100)`` synthetic ones;
- ``lrrN`` / ``grrN`` (swap mixes): pct0's real images, each swapped per draw with probability
  N / 100 for a variant of itself (lrr) or any synthetic image of its class (grr);
- ``repN`` / ``addN``: the segmentation branch's counterparts over image/mask pairs.

Integer percentages name mixes because floats in DVC stage names are fragile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synthmix.core.errors import ParamsError

SWAP_KINDS = ("lrr", "grr")  # swapped at training time, per sample and epoch
CLASSIFICATION_KINDS = ("pct", "aug", *SWAP_KINDS)
SEGMENTATION_KINDS = ("rep", "add")
_NAME = re.compile(r"^(pct|aug|lrr|grr|rep|add)(\d+)$")
_FIXED_TOTAL = ("pct", "rep")  # kinds that keep the training-set size and replace a share of it
_PERCENT_MAX_100 = (*_FIXED_TOTAL, *SWAP_KINDS)  # a share of the set, or a probability
ROLE_REAL, ROLE_CANDIDATE = "real", "candidate"  # the ``role`` of a swap mix's records
_HELP = {
    CLASSIFICATION_KINDS: "must be pctN (N % synthetic at a fixed total, 0..100), "
    "augN (all real plus N % as many synthetic images), lrrN (each real image swapped per draw "
    "with probability N/100 for a variant of itself, 0..100) or grrN (swapped for any synthetic "
    "image of its class, 0..100)",
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
    """A parsed mix name: ``kind`` (pct, aug, lrr, grr, rep, add) and its integer percentage ``value``."""

    kind: str
    value: int

    @classmethod
    def parse(cls, name: str, kinds: tuple[str, ...] = CLASSIFICATION_KINDS) -> "MixSpec":
        m = _NAME.match(name)
        if not m or m.group(1) not in kinds:
            raise MixNameError(f"mix name {name!r} {_HELP[kinds]}")
        spec = cls(m.group(1), int(m.group(2)))
        if spec.kind in _PERCENT_MAX_100 and spec.value > 100:
            what = "a swap probability" if spec.kind in SWAP_KINDS else "a percentage of synthetic images"
            raise MixNameError(f"mix name {name!r}: {what} is at most 100")
        return spec

    @property
    def is_swap(self) -> bool:
        """lrr / grr: real images swapped for synthetic ones at training time."""
        return self.kind in SWAP_KINDS

    @property
    def swap_probability(self) -> float:
        """The per-draw swap probability of a swap mix (N / 100); 0 for every other kind."""
        return self.value / 100.0 if self.is_swap else 0.0

    @property
    def name(self) -> str:
        return f"{self.kind}{self.value}"

    def counts(self, total: int, n_real: int) -> tuple[int, int]:
        """(real, synthetic) items: ``total`` is the fixed size of pct/rep mixes, ``n_real`` the
        real items available (all of them go into aug/add mixes). Swap mixes hold pct0's ``total``
        real items and no fixed synthetic ones (their candidates are swapped in per draw)."""
        if self.is_swap:
            return total, 0
        if self.kind in _FIXED_TOTAL:
            fake = percent_of(total, self.value)
            return total - fake, fake
        return n_real, percent_of(n_real, self.value)

    @property
    def fake_share(self) -> float:
        """Nominal share of synthetic items: N / 100 at a fixed total and for swap mixes (the
        expected share of swapped draws), N / (100 + N) when added."""
        if self.kind in _FIXED_TOTAL or self.is_swap:
            return self.value / 100.0
        return self.value / (100.0 + self.value)

    @property
    def ratio_label(self) -> str:
        """The fake:real ratio as the source papers write it: ``"60:40"``, ``"real + 100 %"``, or
        for swap mixes ``"swap 50 % (own variants)"`` / ``"swap 30 % (class)"``."""
        if self.is_swap:
            return f"swap {self.value} % ({'own variants' if self.kind == 'lrr' else 'class'})"
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
