#!/usr/bin/env python
"""Stage train: synthmix.classify.train.train_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.classify.train import train_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(train_stage)
