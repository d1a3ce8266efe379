"""What a generator backend is: the :class:`Job` it renders and the :class:`Backend` protocol the
generate engine (:mod:`synthmix.generate`) drives; :mod:`synthmix.generators.registry` opens
one by name. A backend may also set ``size`` ((width, height) when not square) and ``save_size``
(write a downsampled copy that the manifest's ``path`` points to, the full image in ``full_path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PIL import Image


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
