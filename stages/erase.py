#!/usr/bin/env python
"""Stage erase: synthmix.personalize.erase.erase_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.personalize.erase import erase_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(erase_stage)
