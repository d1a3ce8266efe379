#!/usr/bin/env python
"""Stage seg_evaluate: synthmix.segmentation.train.seg_evaluate_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.train import seg_evaluate_stage

if __name__ == "__main__":
    run_stage(seg_evaluate_stage)
