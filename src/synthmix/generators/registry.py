"""The generator backends by name: ``generate.backend`` opens one through :func:`open_backend`.

Backends: ``ddpm`` (the trained offline DDPM, :mod:`synthmix.generators.ddpm`), ``sd`` and
``sdxl`` (Stable Diffusion, :mod:`synthmix.generators.stable_diffusion`), each imported only when
it is opened; more can be added with :func:`register_backend`. The params schema's names are
:data:`synthmix.config.choices.BACKENDS`, checked against this registry at import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from synthmix.config.choices import BACKENDS as BACKEND_NAMES
from synthmix.core.errors import ParamsError
from synthmix.generators.base import Backend

if TYPE_CHECKING:
    import torch

    from synthmix.config.sections.generate import GenerateParams


# (params, model_dir, device, **adapter folders: lora_dir, ti_dir -- used by the SD backends)
BackendFactory = Callable[..., Backend]
BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def deco(factory: BackendFactory) -> BackendFactory:
        BACKENDS[name] = factory
        return factory

    return deco


@register_backend("ddpm")
def _ddpm_backend(params: GenerateParams, model_dir: Path, device: torch.device, **_adapters) -> Backend:
    """The class-conditional DDPM trained by the train_generator stage."""
    from synthmix.generators.ddpm import DDPMBackend

    return DDPMBackend(params, model_dir, device)


@register_backend("sd")
def _sd_backend(params: GenerateParams, model_dir: Path, device: torch.device, **adapters) -> Backend:
    """Stable Diffusion 1.x/2.x (:mod:`synthmix.generators.stable_diffusion`, imported on use)."""
    from synthmix.generators.stable_diffusion import StableDiffusionBackend

    return StableDiffusionBackend(params, model_dir, device, "sd", **adapters)


@register_backend("sdxl")
def _sdxl_backend(params: GenerateParams, model_dir: Path, device: torch.device, **adapters) -> Backend:
    """Stable Diffusion XL, optionally with a refiner."""
    from synthmix.generators.stable_diffusion import StableDiffusionBackend

    return StableDiffusionBackend(params, model_dir, device, "sdxl", **adapters)


if set(BACKENDS) != set(BACKEND_NAMES):  # a factory without a name in config/choices.py, or the reverse
    raise ImportError(f"generator backends {sorted(BACKENDS)} != the names in config/choices.py "
                      f"{sorted(BACKEND_NAMES)}: add the name there too")


def open_backend(params: GenerateParams, model_dir: str | os.PathLike, device: torch.device, *,
                 lora_dir: str | os.PathLike | None = None, ti_dir: str | os.PathLike | None = None,
                 erased_dir: str | os.PathLike | None = None) -> Backend:
    """The backend ``params.backend``; ``lora_dir`` / ``ti_dir``: the personalization stages'
    folders (models/lora, models/textual_inversion), used by sd/sdxl when their flags are on;
    ``erased_dir``: the erase stage's folder (generate.sd.erased)."""
    factory = BACKENDS.get(params.backend)
    if factory is None:
        raise ParamsError(f"generate.backend = {params.backend!r}: allowed: {', '.join(sorted(BACKENDS))}")
    adapters = {k: Path(v) for k, v in (("lora_dir", lora_dir), ("ti_dir", ti_dir), ("erased_dir", erased_dir))
                if v is not None}
    return factory(params, Path(model_dir), device, **adapters)
