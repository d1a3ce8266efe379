#!/usr/bin/env python
"""Stage fewshot_features: synthmix.fewshot.features_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.fewshot.probe import features_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(features_stage)
