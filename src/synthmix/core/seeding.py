"""Deterministic seeds.

Each synthetic image's seed is a hash of (global seed, class name, index), so the image is
the same whatever the batch size, resume point or number of processes. Hashing the class
*name* (not its position) keeps seeds stable when classes are added or reordered.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any sequence of ints/strings; stable across Python versions."""
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def image_seed(global_seed: int, class_name: str, index: int) -> int:
    """The seed of the ``index``-th synthetic image of ``class_name``."""
    return derive_seed("image", int(global_seed), str(class_name), int(index))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch for a training run."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
