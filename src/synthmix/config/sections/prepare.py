"""``prepare``: the real train / val / test splits."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from synthmix.config.base import FileParam, Section, unique_names


class PrepareParams(Section):
    source: Literal["fashion_mnist_debian", "torchvision", "image_folder"]
    # torchvision dataset name, used when source is torchvision
    dataset: Literal["cifar10", "stl10", "fashion_mnist"]
    # Debian files dir / torchvision download dir / ROOT of ROOT/<class>/* images
    root: Annotated[str, FileParam()]
    download: bool
    classes: list[str] = Field(min_length=2)
    train_per_class: int = Field(ge=1)
    val_per_class: int = Field(ge=1)
    test_per_class: int = Field(ge=1)
    # square side for image_folder photos (resize shorter side + centre crop); null keeps size
    image_size: Optional[int] = Field(ge=8)
    skip_corrupt: bool
    # exact copies (same sha256) across train/val/test: error = stop naming the files;
    # drop = leave the copy out of the later split (train, val, test order), counted in the metrics
    duplicates: Literal["error", "drop"]
    seed: int

    _unique_classes = field_validator("classes")(unique_names)


SCHEMA = PrepareParams
