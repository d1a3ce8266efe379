#!/usr/bin/env python
"""Stage fewshot_variants: synthmix.fewshot.variants_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.fewshot import variants_stage

if __name__ == "__main__":
    run_stage(variants_stage)
