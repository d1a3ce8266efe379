"""Offline image generators trained inside the pipeline (stage ``train_generator``).

The default generator is a small class-conditional DDPM (:mod:`synthmix.generators.ddpm`)
with classifier-free guidance. A trained generator is a diffusers pipeline folder
(``model_index.json``, ``unet/``, ``scheduler/``) plus ``generator.json`` describing the
classes, image mode and training run.
"""

from __future__ import annotations

from .ddpm import (
    GENERATOR_JSON,
    ClassConditionalDDPMPipeline,
    load_generator,
    read_generator_info,
    replace_dir,
    sampling_scheduler,
    train_ddpm,
    unet_weights_file,
)

__all__ = [
    "GENERATOR_JSON",
    "ClassConditionalDDPMPipeline",
    "load_generator",
    "read_generator_info",
    "replace_dir",
    "sampling_scheduler",
    "train_ddpm",
    "unet_weights_file",
]
