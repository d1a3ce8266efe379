#!/usr/bin/env python
"""Stage seg_summarize: synthmix.segmentation.summary.seg_summarize_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.segmentation.summary import seg_summarize_stage

if __name__ == "__main__":
    run_stage(seg_summarize_stage)
