"""``report``: metrics/REPORT.md and its pictures."""

from __future__ import annotations

from pydantic import Field

from synthmix.config.base import Section


class ReportParams(Section):
    """metrics/REPORT.md and its pictures."""

    sheet_per_class: int = Field(ge=1)  # synthetic images per class in the contact sheets
    seed: int  # which images the contact sheets show


SCHEMA = ReportParams
