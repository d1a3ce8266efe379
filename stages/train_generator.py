#!/usr/bin/env python
"""Stage train_generator: synthmix.generators.ddpm_training.train_generator_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.generators.ddpm_training import train_generator_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(train_generator_stage)
