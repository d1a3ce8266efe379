#!/usr/bin/env python
"""Stage seg_summarize: synthmix.reporting.segmentation.seg_summarize_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.reporting.segmentation import seg_summarize_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(seg_summarize_stage)
