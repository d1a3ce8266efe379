#!/usr/bin/env python
"""Stage generate: synthmix.generate.generate_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.generate import generate_stage

if __name__ == "__main__":
    run_stage(generate_stage)
