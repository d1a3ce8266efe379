#!/usr/bin/env python
"""Stage fewshot_features: synthmix.fewshot.features_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.fewshot import features_stage

if __name__ == "__main__":
    run_stage(features_stage)
