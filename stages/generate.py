#!/usr/bin/env python
"""Stage generate: synthmix.generate.generate_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.generate import generate_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(generate_stage)
