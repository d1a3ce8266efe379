"""params.yaml as one typed schema, split by area (``data``, ``generation``, ``classify``,
``quality``, ``hyponet``, ``segmentation``), the root :class:`~synthmix.config.params.Params`
with its cross-section checks, and :func:`load_params`, which every stage calls first."""

from synthmix.config.loading import load_params, validate_params
from synthmix.config.params import Params

__all__ = ["Params", "load_params", "validate_params"]
