#!/usr/bin/env python
"""Stage erase: synthmix.personalize.erase.erase_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.personalize.erase import erase_stage

if __name__ == "__main__":
    run_stage(erase_stage)
