#!/usr/bin/env python
"""Stage prepare: synthmix.data.prepare.prepare_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.data.prepare import prepare_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(prepare_stage)
