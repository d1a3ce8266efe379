"""Exceptions that carry a message meant for the person running the pipeline."""


class SynthmixError(Exception):
    """A problem the user can fix: the message names it and says how."""


class ParamsError(SynthmixError):
    """params.yaml holds a value the schema does not allow."""


class DataError(SynthmixError):
    """Input data is missing, empty, corrupt or inconsistent."""


class MissingAssetError(SynthmixError):
    """Weights or data that must be installed or downloaded are not available."""


class DiskFullError(SynthmixError):
    """A write failed for lack of disk space (or quota); nothing half-written was kept."""


def disk_full_message(path, exc: OSError | None = None) -> str:
    """What the user reads when the disk filled up while writing ``path``."""
    import errno
    import os
    import shutil

    what = "no space left on device" if exc is None or exc.errno != errno.EDQUOT else "disk quota exceeded"
    where = path if path is not None else "an output"
    try:
        folder = os.path.dirname(os.path.abspath(path)) if path is not None else "."
        free = f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free there now)"
    except OSError:
        free = ""
    return (f"{what} while writing {where}{free}: the file was not written (no partial file is left; "
            "an earlier version stays as it was). Free disk space (`make clean-partial` removes abandoned "
            "partial sets, `dvc gc -w` cache entries the workspace does not use) and re-run `dvc repro`: "
            "finished outputs are kept, and generate, train_generator, train_lora and "
            "train_textual_inversion resume from their partial folders")
