"""The LoveDA preset (seg-loveda-512) and the mask id offset it needs (LoveDA's 0 = no-data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from synthmix.config.presets import apply_preset, load_preset
from synthmix.core.errors import DataError, ParamsError
from synthmix.segmentation.data import decode_mask

REPO = Path(__file__).resolve().parents[1]
LOVEDA = ["background", "building", "road", "water", "barren", "forest", "agriculture"]


def test_id_offset_maps_loveda_values_to_classes_and_no_data_to_ignore():
    raw = np.array([[0, 1, 2, 7], [3, 4, 5, 6]], np.uint8)  # LoveDA: 0 no-data, 1..7 classes
    ids = decode_mask(Image.fromarray(raw, mode="L"), "m.png", 7, 255, None, id_offset=1)
    assert ids.tolist() == [[255, 0, 1, 6], [2, 3, 4, 5]]
    with pytest.raises(DataError, match=r"values \[8\].*id_offset 1"):
        decode_mask(Image.fromarray(np.array([[8]], np.uint8), mode="L"), "m.png", 7, 255, None, id_offset=1)
    assert decode_mask(Image.fromarray(raw[:, 1:] - 1, mode="L"), "m.png", 7, 255, None).max() == 6  # offset 0


def _merged(overlay: dict):
    return apply_preset(yaml.safe_load((REPO / "params.yaml").read_text()), overlay)


def test_loveda_preset_validates_with_the_papers_classes():
    p = _merged(load_preset("seg-loveda-512", REPO / "presets"))
    assert p.seg_prepare.classes == LOVEDA and p.seg_prepare.id_offset == 1 and p.seg_prepare.ignore_index == 255
    assert p.seg_prepare.image_size == 512 and p.seg_train.models == ["bisenetv2", "ppliteseg_t"]
    assert (p.seg_train_spade.ngf, p.seg_train_spade.ndf, p.seg_train_spade.spade_hidden) == (64, 64, 128)
    assert 512 // 2**p.seg_train_spade.upsamples == 16  # the reference's start size for 512 px
    out = subprocess.run([sys.executable, "scripts/preset.py", "seg-loveda-512", "--print"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.startswith("dvc exp run -n seg-loveda-512 -S ") and "++seg_prepare.id_offset=1" in out


def test_id_offset_needs_folder_pairs_id_masks():
    with pytest.raises(ParamsError, match="id_offset = 1 applies to folder_pairs id masks only"):
        _merged({"seg_prepare": {"id_offset": 1}})  # the scene set
