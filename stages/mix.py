#!/usr/bin/env python
"""Stage mix: synthmix.mixes.mix_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.mixes import mix_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(mix_stage)
