#!/usr/bin/env python
"""Stage hyponet: synthmix.hyponet.wildcards.hyponet_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.hyponet.wildcards import hyponet_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(hyponet_stage)
