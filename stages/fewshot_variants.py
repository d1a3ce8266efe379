#!/usr/bin/env python
"""Stage fewshot_variants: synthmix.fewshot.variants_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.fewshot.variants import variants_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(variants_stage)
