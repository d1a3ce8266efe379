#!/usr/bin/env python
"""Stage evaluate: synthmix.classify.evaluate.evaluate_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.classify.evaluate import evaluate_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(evaluate_stage)
