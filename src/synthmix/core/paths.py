"""The annotations of a stage function's path options (see :mod:`synthmix.runner`).

``Input`` marks a path the stage reads, ``Output`` one it writes; the runner turns each
keyword-only parameter so annotated into a required ``--kebab-case`` option, and
``tests/test_dvc_graph.py`` checks every Input is one of the stage's deps in dvc.yaml and every
Output one of its outs, metrics or plots.
"""

from pathlib import Path
from typing import Annotated

Input = Annotated[Path, "input"]
Output = Annotated[Path, "output"]
