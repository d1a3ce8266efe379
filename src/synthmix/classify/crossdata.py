"""Cross-dataset evaluation: accuracy on extra real test sets whose classes map onto ours.

The prompt-strategy study tests one classifier on CIFAR-10 test, STL-10 test and ImageNet
val (the same 5 classes) and reports the accuracy per set and their average: a classifier
that learnt "CIFAR-10" rather than "car" scores well on the first only. Each extra set is
``evaluate.extra_test_sets[i]``: an image folder ``ROOT/<their class>/*`` or a torchvision
dataset's test split, with ``class_map`` from their class names to ours (names compared
case- and punctuation-blind; unmapped classes are left out, e.g. STL-10's "airplane").

Images are made square the way ``prepare`` makes folder photos square (shorter side
resized, centre crop) at the classifier's input size.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from synthmix.core.errors import DataError
from synthmix.core.seeding import derive_seed
from synthmix.data.sources import (
    ImageFolderSource,
    ImageSource,
    load_torchvision,
    normalize_name,
    resize_center_crop,
)

if TYPE_CHECKING:
    from synthmix.config.sections.evaluate import ExtraTestSet

log = logging.getLogger(__name__)


def _available_classes(spec: ExtraTestSet) -> tuple[ImageSource, str]:
    if spec.source == "torchvision":
        return load_torchvision(spec.dataset, spec.root, spec.download), "test"
    from pathlib import Path

    root = Path(spec.root)
    if not root.is_dir():
        raise DataError(
            f"evaluate.extra_test_sets[{spec.name}].root = {root} is not a directory: it must hold one folder "
            "per class (ROOT/<class>/*.jpg, ...)"
        )
    dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    wanted = list(spec.class_map) if spec.class_map else dirs
    by_norm = {normalize_name(d): d for d in dirs}
    missing = [c for c in wanted if normalize_name(c) not in by_norm]
    if missing:
        raise DataError(
            f"evaluate.extra_test_sets[{spec.name}].class_map names {missing}, which {root} does not have; "
            f"its class folders: {dirs}"
        )
    return ImageFolderSource(root, [by_norm[normalize_name(c)] for c in wanted]), "pool"


def class_mapping(spec: ExtraTestSet, available: Sequence[str], classes: Sequence[str]) -> dict[int, int]:
    """{their label index: our class index} from ``spec.class_map`` (or same-named classes)."""
    ours = {normalize_name(c): i for i, c in enumerate(classes)}
    theirs = {normalize_name(n): i for i, n in enumerate(available)}
    if spec.class_map:
        mapping = {}
        for their, our in spec.class_map.items():
            if normalize_name(their) not in theirs:
                raise DataError(
                    f"evaluate.extra_test_sets[{spec.name}].class_map: {their!r} is not a class of this set "
                    f"(classes: {list(available)})"
                )
            mapping[theirs[normalize_name(their)]] = ours[normalize_name(our)]
        return mapping
    mapping = {theirs[n]: ours[n] for n in ours if n in theirs}
    if not mapping:
        raise DataError(
            f"evaluate.extra_test_sets[{spec.name}] shares no class name with prepare.classes {list(classes)} "
            f"(its classes: {list(available)}): give a class_map"
        )
    return mapping


def load_test_set(spec: ExtraTestSet, classes: Sequence[str], size: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(uint8 N x 3 x size x size, our labels, info) of one extra test set."""
    source, split = _available_classes(spec)
    mapping = class_mapping(spec, source.class_names, classes)
    labels = np.asarray(source.labels(split))
    chosen: list[int] = []
    for their in sorted(mapping):
        idx = np.flatnonzero(labels == their)
        if spec.max_per_class and len(idx) > spec.max_per_class:
            rng = np.random.default_rng(derive_seed("extra_test", spec.seed, spec.name, their))
            idx = np.sort(rng.choice(idx, spec.max_per_class, replace=False))
        chosen.extend(idx.tolist())
    if not chosen:
        raise DataError(f"evaluate.extra_test_sets[{spec.name}] has no images of the mapped classes")
    data = np.empty((len(chosen), size, size, 3), dtype=np.uint8)
    for k, i in enumerate(tqdm(chosen, desc=f"loading {spec.name}", unit="img", leave=False)):
        data[k] = np.asarray(resize_center_crop(source.load(split, i).convert("RGB"), size))
    y = torch.tensor([mapping[int(labels[i])] for i in chosen], dtype=torch.long)
    info = {
        "source": spec.source if spec.source == "image_folder" else f"torchvision:{spec.dataset}",
        "class_map": {source.class_names[t]: classes[o] for t, o in sorted(mapping.items())},
        "n": len(chosen),
    }
    return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(), y, info


def cross_dataset_summary(main_accuracy: float, extra: dict[str, dict]) -> dict:
    """Accuracy per test set ("test" = the main real split) and their unweighted average."""
    per_set = {"test": main_accuracy, **{name: r["accuracy"] for name, r in extra.items()}}
    return {"test_sets": per_set, "accuracy_avg": round(float(np.mean(list(per_set.values()))), 6)}
