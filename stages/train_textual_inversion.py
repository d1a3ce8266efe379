#!/usr/bin/env python
"""Stage train_textual_inversion: synthmix.personalize.textual_inversion.train_textual_inversion_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.personalize.textual_inversion import train_textual_inversion_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(train_textual_inversion_stage)
