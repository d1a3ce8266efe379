#!/usr/bin/env python
"""Stage seg_train_labels: synthmix.segmentation.label_ddpm.seg_train_labels_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.label_ddpm import seg_train_labels_stage

if __name__ == "__main__":
    run_stage(seg_train_labels_stage)
