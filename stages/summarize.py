#!/usr/bin/env python
"""Stage summarize: synthmix.reporting.summary.summarize_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.reporting.summary import summarize_stage

if __name__ == "__main__":
    run_stage(summarize_stage)
