#!/usr/bin/env python
"""Stage seg_prepare: synthmix.segmentation.prepare.seg_prepare_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.prepare import seg_prepare_stage

if __name__ == "__main__":
    run_stage(seg_prepare_stage)
