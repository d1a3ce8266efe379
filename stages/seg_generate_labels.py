#!/usr/bin/env python
"""Stage seg_generate_labels: synthmix.segmentation.label_ddpm.seg_generate_labels_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.label_ddpm import seg_generate_labels_stage

if __name__ == "__main__":
    run_stage(seg_generate_labels_stage)
