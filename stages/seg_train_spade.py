#!/usr/bin/env python
"""Stage seg_train_spade: synthmix.segmentation.spade.seg_train_spade_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.spade import seg_train_spade_stage

if __name__ == "__main__":
    run_stage(seg_train_spade_stage)
