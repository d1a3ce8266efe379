"""How every summary writes numbers: percentages, p-values, intervals (one style for all tables)."""

from __future__ import annotations

from typing import Optional


def pct(x: Optional[float], digits: int = 2) -> str:
    """A share as a percentage without the sign (0.8863 -> ``88.63``); ``–`` for None."""
    return "–" if x is None else f"{100.0 * x:.{digits}f}"


def p_value(p: Optional[float]) -> str:
    """A p-value with three decimals, ``<0.001`` below 0.001, ``–`` for None."""
    if p is None:
        return "–"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def number(x: Optional[float], digits: int = 2) -> str:
    """A plain number with ``digits`` decimals; ``–`` for None."""
    return "–" if x is None else f"{x:.{digits}f}"
