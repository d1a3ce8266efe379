#!/usr/bin/env python
"""Stage train_lora: synthmix.personalize.lora.train_lora_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.personalize.lora import train_lora_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(train_lora_stage)
