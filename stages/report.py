#!/usr/bin/env python
"""Stage report: synthmix.reporting.report.report_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.reporting.report import report_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(report_stage)
