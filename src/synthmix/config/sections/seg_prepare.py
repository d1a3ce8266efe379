"""``seg_prepare``: the segmentation branch's real image/mask pairs."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator, model_validator

from synthmix.config.base import FileParam, Section, unique_names


def _pair(v: list[int], key: str, low: int) -> list[int]:
    if len(v) != 2 or v[0] > v[1] or v[0] < low:
        raise ValueError(f"{key} must be [min, max] with {low} <= min <= max, got {v}")
    return v


class SegPrepareParams(Section):
    # fashion_mnist_scenes: the offline scene set built from Fashion-MNIST items (root = its files)
    # folder_pairs: root/images/<name>.<ext> with root/masks/<name>.png (LoveDA-style layout)
    source: Literal["fashion_mnist_scenes", "folder_pairs"]
    root: Annotated[str, FileParam()]
    # class names in mask-id order; for scenes, id 0 is the background, the rest are
    # Fashion-MNIST class names
    classes: list[str] = Field(min_length=2)
    # folder_pairs only: one [r, g, b] mask colour per class; null = masks hold integer ids
    palette: Optional[list[list[int]]]
    ignore_index: int = Field(ge=0, le=255)
    # folder_pairs id masks: class id = mask value - id_offset; values below it are no-data
    # (ignore_index). LoveDA: 1 (its 0 = no-data, 1..7 = background..agriculture)
    id_offset: int = Field(ge=0, le=254)
    image_size: int = Field(ge=32)
    train_count: int = Field(ge=1)
    val_count: int = Field(ge=1)
    test_count: int = Field(ge=1)
    val_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    items_per_scene: list[int]
    item_size: list[int]
    silhouette_threshold: int = Field(ge=1, le=254)
    # exact copies (same image sha256) across train/val/test: error = stop naming the files;
    # drop = leave the pair out of the later split (train, val, test order), counted in the metrics
    duplicates: Literal["error", "drop"]
    seed: int

    _unique_classes = field_validator("classes")(unique_names)

    @field_validator("items_per_scene")
    @classmethod
    def _items(cls, v: list[int]) -> list[int]:
        return _pair(v, "seg_prepare.items_per_scene", 1)

    @field_validator("item_size")
    @classmethod
    def _item_size(cls, v: list[int]) -> list[int]:
        return _pair(v, "seg_prepare.item_size", 8)

    @model_validator(mode="after")
    def _consistent(self) -> "SegPrepareParams":
        if self.ignore_index < len(self.classes):
            raise ValueError(
                f"seg_prepare.ignore_index = {self.ignore_index} collides with a class id "
                f"(0..{len(self.classes) - 1}); use 255"
            )
        if self.palette is not None:
            if len(self.palette) != len(self.classes):
                raise ValueError(
                    f"seg_prepare.palette has {len(self.palette)} colours for {len(self.classes)} classes"
                )
            for c in self.palette:
                if len(c) != 3 or not all(0 <= x <= 255 for x in c):
                    raise ValueError(f"seg_prepare.palette entry {c} must be [r, g, b] with 0..255 values")
            if len({tuple(c) for c in self.palette}) != len(self.palette):
                raise ValueError("seg_prepare.palette colours must be distinct")
        if self.id_offset and (self.palette is not None or self.source != "folder_pairs"):
            raise ValueError(
                f"seg_prepare.id_offset = {self.id_offset} applies to folder_pairs id masks only: "
                "set it to 0, or use source folder_pairs with palette null"
            )
        if self.source == "fashion_mnist_scenes" and self.item_size[1] > self.image_size:
            raise ValueError(
                f"seg_prepare.item_size = {self.item_size} exceeds image_size = {self.image_size}"
            )
        if self.image_size % 32:
            raise ValueError(f"seg_prepare.image_size = {self.image_size} must be a multiple of 32 (the "
                             "segmentation encoders downsample 32x)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("seg_prepare.val_fraction + test_fraction must be below 1")
        return self


SCHEMA = SegPrepareParams
