#!/usr/bin/env python
"""Stage fewshot_summarize: synthmix.fewshot.summarize_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.core.stage import run_stage
from synthmix.fewshot import summarize_stage

if __name__ == "__main__":
    run_stage(summarize_stage)
