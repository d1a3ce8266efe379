"""What a generator backend is: the :class:`Job` it renders, the :class:`Backend` protocol the
generate engine (:mod:`synthmix.generate`) drives, and the registry that opens one by name.

Backends: ``ddpm`` (the trained offline DDPM, :mod:`synthmix.generators.ddpm`), ``sd`` and
``sdxl`` (Stable Diffusion, :mod:`synthmix.generators.stable_diffusion`), each imported only
when it is opened. More can be added with :func:`register_backend`. A backend may also set
``size`` ((width, height) when not square) and ``save_size`` (write a downsampled copy that
the manifest's ``path`` points to, the full image in ``full_path``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from synthmix.core.errors import ParamsError
from synthmix.generators.registry import BACKENDS as BACKEND_NAMES

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from synthmix.config.generation import GenerateParams

IMAGES = "images"


@dataclass(frozen=True)
class Job:
    """One synthetic image to make: image ``index`` of class ``label`` (label id ``class_id``).

    Image-to-image jobs (``generate.mode: img2img``) also name their real source image (path and
    sha256), the variant number and the strength drawn for it (see :mod:`synthmix.generators.img2img`).
    """

    label: str
    class_id: int
    index: int
    seed: int
    source_path: str | None = None
    source_sha256: str | None = None
    variant: int | None = None
    strength: float | None = None

    @property
    def is_img2img(self) -> bool:
        return self.source_sha256 is not None

    @property
    def relpath(self) -> str:
        if self.is_img2img:  # named by the source, so a variant's file does not depend on the job list
            return f"{IMAGES}/{self.label}/{self.source_sha256[:16]}-v{self.variant:02d}.png"
        return f"{IMAGES}/{self.label}/{self.index:05d}.png"


class Backend(Protocol):
    """What :func:`generate_synthetic` needs from a generator backend."""

    name: str
    classes: list[str]  # what the model can generate, in its label order
    mode: str  # "L" or "RGB"
    resolution: int
    model_sha256: str

    def content_key(self) -> dict:
        """Everything besides (class, index, seed) that determines the pixels."""

    def record_fields(self, job: Job) -> dict:
        """Manifest fields of one image beyond path, label, source and sha256."""

    def generate(self, jobs: Sequence[Job]) -> list[Image.Image]:
        """One image per job, in order."""


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


if set(BACKENDS) != set(BACKEND_NAMES):  # a factory without a name in registry.py, or the reverse
    raise ImportError(f"generator backends {sorted(BACKENDS)} != the names in generators/registry.py "
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
