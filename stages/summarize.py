#!/usr/bin/env python
"""Stage summarize: synthmix.reporting.classification.summarize_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.reporting.classification import summarize_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(summarize_stage)
