"""Personalization of the Stable Diffusion generator as pipeline stages: LoRA
(:mod:`synthmix.personalize.lora`, stage ``train_lora``) and textual inversion
(:mod:`synthmix.personalize.textual_inversion`, stage ``train_textual_inversion``), trained on
the real training split; :mod:`synthmix.generators.adapters` is what ``generate`` reads of
their outputs. Kept light: importing the package imports no torch."""
