"""seg_mix: training sets that replace (``repN``) or extend (``addN``) the real pairs.

``repN`` keeps the real train size and swaps N % of the pairs (rounded half up) for synthetic
ones; ``addN`` keeps every real pair and adds N % as many synthetic ones. The real pairs that
are swapped out come first in one seeded permutation that does not depend on N, so the mixes
are nested (rep20 drops rep10's pairs and 10 % more), and synthetic pairs are taken in index
order. A mix is a pair manifest pointing into the real and synthetic sets; nothing is copied.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import DataError
from ..params import seg_synthetic_needed
from ..seeding import derive_seed


def build_seg_mix(name: str, real: Sequence[dict], synthetic: Sequence[dict], seed: int) -> list[dict]:
    if not real:
        raise DataError("the real train manifest lists no pairs: run seg_prepare")
    n_real, n_fake = seg_synthetic_needed(name, len(real))
    if n_fake > len(synthetic):
        raise DataError(
            f"seg_mix {name} needs {n_fake} synthetic pairs but data/seg/synthetic holds {len(synthetic)}: "
            f"raise seg_generate_labels.count to at least {n_fake}"
        )
    order = np.random.default_rng(derive_seed("seg-mix", seed) % 2**63).permutation(len(real))
    keep = np.sort(order[len(real) - n_real :])
    return [dict(real[int(i)]) for i in keep] + [dict(r) for r in synthetic[:n_fake]]
