"""``evaluate``: the real test split and extra (cross-dataset) test sets."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from synthmix.config.base import FileParam, Section, check


class ExtraTestSet(Section):
    """One extra real test set for cross-dataset evaluation (the thesis's CIFAR-10 / STL-10 / ImageNet table)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # short id: metrics key and table column
    source: Literal["image_folder", "torchvision"] = "image_folder"
    root: Annotated[str, FileParam()] = Field(min_length=1)  # ROOT/<their class>/* (image_folder) or torchvision's root
    dataset: Literal["cifar10", "stl10", "fashion_mnist"] = "cifar10"  # torchvision only; test split
    download: bool = False  # torchvision only
    # their class name -> one of prepare.classes; their classes not listed are left out.
    # Empty = every prepare.classes name that the set also has (compared case/punctuation-blind).
    class_map: dict[str, str] = {}
    max_per_class: Optional[int] = Field(default=None, ge=1)  # null = every image
    seed: int = 0  # which images when max_per_class cuts


class EvaluateParams(Section):
    batch_size: int = Field(ge=1)
    extra_test_sets: list[ExtraTestSet]

    @field_validator("extra_test_sets")
    @classmethod
    def _unique_names(cls, v: list[ExtraTestSet]) -> list[ExtraTestSet]:
        names = [t.name for t in v]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({"test"} & set(names)))
        if dupes:
            raise ValueError(f"test set names must be unique and not 'test' (the main split): {dupes}")
        return v


SCHEMA = EvaluateParams


@check("evaluate", "prepare")
def _mapped_classes_known(p) -> None:
    for test_set in p.evaluate.extra_test_sets:
        unknown = sorted(set(test_set.class_map.values()) - set(p.prepare.classes))
        if unknown:
            raise ValueError(
                f"evaluate.extra_test_sets[{test_set.name}].class_map maps to {unknown}, which are not in "
                f"prepare.classes {p.prepare.classes}"
            )


CHECKS = [_mapped_classes_known]
