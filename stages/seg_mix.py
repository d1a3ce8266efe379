#!/usr/bin/env python
"""Stage seg_mix: synthmix.segmentation.data.seg_mix_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.data import seg_mix_stage

if __name__ == "__main__":
    run_stage(seg_mix_stage)
