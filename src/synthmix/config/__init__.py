"""params.yaml as typed sections, one schema module per top-level key (:mod:`synthmix.config.sections`),
and :func:`load_params`, through which every stage reads the sections it lists in dvc.yaml.

``python -m synthmix.config check [params.yaml]`` validates every section and every rule that spans
sections (``make repro`` runs it before ``dvc repro``)."""

from synthmix.config.loading import Params, load_params, validate_params

__all__ = ["Params", "load_params", "validate_params"]
