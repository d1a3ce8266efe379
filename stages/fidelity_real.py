#!/usr/bin/env python
"""Stage fidelity_real: synthmix.quality.fidelity.fidelity_real_stage (its docstring says what it does; dvc.yaml gives its paths)."""

from synthmix.quality.fidelity import fidelity_real_stage
from synthmix.runner import run_stage

if __name__ == "__main__":
    run_stage(fidelity_real_stage)
