"""``device``: where every computing stage runs. auto = CUDA when present, else the CPU."""

from typing import Literal

SCHEMA = Literal["auto", "cpu", "cuda"]
