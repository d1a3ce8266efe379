"""Per-epoch training metrics in DVCLive's layout, written as plain outputs of a DVC stage.

A training stage keeps one DVCLive folder per run, ``<dir>``, and declares its two parts in
dvc.yaml: ``<dir>/metrics.json`` under ``metrics:`` and ``<dir>/plots/metrics`` under
``plots:`` (``x: step``), both ``cache: false``, and passes both paths on its command line.
:func:`live_metrics` checks that they belong together and opens a :class:`dvclive.Live` on
``<dir>``; :func:`log_epoch` appends one row per value to ``plots/metrics/<name>.tsv``
(``step`` = the epoch, from 1, then the value) and rewrites ``metrics.json``, which holds the
last epoch's values, ``step``, and the summary values the stage puts in ``live.summary``.
:func:`read_metric` reads a curve back (the report's training curves).

DVCLive is held to those files through its public constructor: it writes no dvc.yaml of its
own (``dvcyaml=False``, the stage declares them), saves no experiment (``save_dvc_exp=False``;
``dvc exp run`` records the run anyway), makes no report, logs no timestamp column, and posts
nothing to DVC Studio (``DVC_STUDIO_OFFLINE`` while it starts, whatever the environment holds);
``Live.end()`` is not called (inside ``dvc exp run`` it would ``git add`` files of the folder).
DVCLive opens the enclosing DVC repository to name its experiment (read-only under ``dvc
repro``). Caution for use outside a pipeline: in a git repository without DVC, DVCLive runs
``dvc init`` there; stages always run in this DVC repository, and tests in temporary folders
outside any git repository. What remains outside the folder is DVCLive's progress signal for
the VS Code extension, ``.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED``.
"""

from __future__ import annotations

import csv
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping

from synthmix.core.errors import DataError

if TYPE_CHECKING:
    from dvclive import Live


def open_live(directory: str | os.PathLike) -> "Live":
    """A DVCLive logger on ``directory`` (emptied of earlier DVCLive files), at step 1."""
    from dvclive import Live

    saved = os.environ.get("DVC_STUDIO_OFFLINE")
    os.environ["DVC_STUDIO_OFFLINE"] = "true"
    try:
        live = Live(os.fspath(directory), dvcyaml=False, save_dvc_exp=False, report=None)
    finally:
        if saved is None:
            del os.environ["DVC_STUDIO_OFFLINE"]
        else:
            os.environ["DVC_STUDIO_OFFLINE"] = saved
    live.step = 1  # steps are epochs
    return live


@contextmanager
def live_metrics(metrics: str | os.PathLike, plots: str | os.PathLike) -> Iterator["Live"]:
    """DVCLive on the folder of ``metrics`` (``<dir>/metrics.json``; ``plots`` must be
    ``<dir>/plots/metrics``); the summary is written once more on leaving, with the last step."""
    directory = Path(metrics).parent
    if Path(metrics).name != "metrics.json" or Path(plots) != directory / "plots" / "metrics":
        raise DataError(f"--metrics {metrics} and --plots {plots} are not one DVCLive folder's "
                        "<dir>/metrics.json and <dir>/plots/metrics")  # fmt: skip
    live = open_live(directory)
    yield live
    if "step" in live.summary:  # next_step() has moved one past the last logged step
        live.step = live.summary["step"]
    live.make_summary()


def log_epoch(live: "Live", row: Mapping[str, float], step_key: str = "epoch") -> None:
    """Log every value of ``row`` but ``step_key`` at the current step, then move to the next."""
    for name, value in row.items():
        if name != step_key:
            live.log_metric(name, value)
    live.next_step()


def read_metric(directory: str | os.PathLike, name: str) -> list[tuple[int, float]]:
    """(step, value) rows of metric ``name`` in the DVCLive folder ``directory``; [] if absent."""
    path = Path(directory) / "plots" / "metrics" / f"{name}.tsv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return [(int(r["step"]), float(r[name])) for r in csv.DictReader(fh, delimiter="\t")]
