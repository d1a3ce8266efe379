#!/usr/bin/env python
"""Stage fewshot_train: synthmix.fewshot.train_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.fewshot.probe import train_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(train_stage)
