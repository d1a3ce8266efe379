"""Exceptions that carry a message meant for the person running the pipeline."""


class SynthmixError(Exception):
    """A problem the user can fix: the message names it and says how."""


class ParamsError(SynthmixError):
    """params.yaml holds a value the schema does not allow."""


class DataError(SynthmixError):
    """Input data is missing, empty, corrupt or inconsistent."""


class MissingAssetError(SynthmixError):
    """Weights or data that must be installed or downloaded are not available."""
