#!/usr/bin/env python
"""Stage seg_generate_images: synthmix.segmentation.spade.seg_generate_images_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.runner import run_stage
from synthmix.segmentation.spade import seg_generate_images_stage

if __name__ == "__main__":
    run_stage(seg_generate_images_stage)
