#!/usr/bin/env python
"""Stage seg_filter: synthmix.segmentation.freemask.seg_filter_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.freemask import seg_filter_stage

if __name__ == "__main__":
    run_stage(seg_filter_stage)
