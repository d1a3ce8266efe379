#!/usr/bin/env python
"""Stage qc: synthmix.classify.qc.qc_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.classify.qc import qc_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(qc_stage)
