"""One module per top-level key of params.yaml: ``sections/<key>.py`` defines ``SCHEMA`` (the
pydantic model, or the type of a scalar key such as ``device``) and may define ``CHECKS``
(:class:`synthmix.config.base.Check`: rules that span sections).

:mod:`synthmix.config.loading` imports only the modules of the sections a stage lists under its
``params`` in dvc.yaml, so a stage's code dependencies include the schema of exactly those
sections (``tests/stage_graph.py`` adds them to the import closure).
"""
