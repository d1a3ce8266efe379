#!/usr/bin/env python
"""Stage seg_train: synthmix.segmentation.train.seg_train_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.train import seg_train_stage

if __name__ == "__main__":
    run_stage(seg_train_stage)
