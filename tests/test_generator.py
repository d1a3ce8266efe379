"""The offline generator: DDPM training, the model folder, and resumable synthetic-set generation.

Everything is tiny (8/16-channel UNet at 16 px, 3 classes, 60 training steps: enough that
sampled pixels are mostly not saturated, so byte comparisons mean something) and runs on CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shipped_params import section
from synthmix import generate as gen_mod
from synthmix.config.sections.generate import GenerateParams
from synthmix.core.errors import DataError, MissingAssetError
from synthmix.core.seeding import image_seed
from synthmix.data.classes import read_class_info
from synthmix.data.manifest import file_sha256, read_manifest, write_manifest
from synthmix.generate import generate_synthetic
from synthmix.generators.ddpm import ClassConditionalDDPMPipeline, load_generator
from synthmix.generators.ddpm_training import load_training_images, train_ddpm

CLASSES = ["circle", "square", "bar"]
RES = 16


def _fake_real_set(root: Path, per_class: int = 4, size: int = 20) -> tuple[Path, Path]:
    """A few grey shape images per class (deliberately not at the model resolution)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    records = []
    for c in CLASSES:
        for i in range(per_class):
            cy, cx = rng.integers(7, size - 7, 2)
            if c == "circle":
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 25
            elif c == "square":
                mask = (abs(yy - cy) < 5) & (abs(xx - cx) < 5)
            else:
                mask = abs(xx - cx) < 2
            a = np.where(mask, 220, 20).astype(np.uint8) + rng.integers(0, 20, (size, size), dtype=np.uint8)
            path = root / "train" / c / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a, "L").save(path)
            records.append({"path": str(path), "label": c, "source": "real", "sha256": file_sha256(path)})
    manifest = root / "train.jsonl"
    write_manifest(manifest, records)
    classes_json = root / "classes.json"
    classes_json.write_text(json.dumps({"classes": CLASSES, "mode": "L"}))
    return manifest, classes_json


def _train(params, manifest, classes_json, out) -> dict:
    """What the train_generator stage does: load the real split, train on the tensors."""
    info = read_class_info(classes_json)
    images, labels = load_training_images(read_manifest(manifest), info["classes"], info["mode"], params.resolution,
                                          show_progress=False)
    return train_ddpm(params, images, labels, info["classes"], info["mode"], out, device="cpu", show_progress=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    manifest, classes_json = _fake_real_set(root / "real")
    params = section("train_generator", resolution=RES, block_out_channels=[8, 16], steps=60, batch_size=8,
                     lr=1e-3, seed=0)
    out = root / "models" / "generator"
    info = _train(params, manifest, classes_json, out)
    assert info["classes"] == CLASSES and np.isfinite(info["final_loss"])
    assert info["train_seconds"] > 0 and info["images_per_s"] > 0 and info["environment"]["torch"]  # for the metrics
    return out


def _params(**kw) -> GenerateParams:
    base = {"per_class": 3, "steps": 2, "guidance_scale": 2.0, "batch_size": 4, "seed": 7}
    base.update(kw)
    return section("generate", **base)


def _run(params, model_dir, root: Path, name: str, **kw) -> dict:
    return generate_synthetic(
        params, model_dir, root / name, device="cpu", scratch_root=root / ".partial", show_progress=False, **kw
    )


def _digests(out: Path) -> dict[str, str]:
    return {Path(r["path"]).relative_to(out).as_posix(): r["sha256"] for r in read_manifest(out / "manifest.jsonl")}


def test_train_writes_a_diffusers_pipeline_folder(model_dir):
    assert not list(model_dir.parent.glob(".generator.tmp-*"))  # the temp folder was renamed
    info = json.loads((model_dir / "generator.json").read_text())
    assert info["classes"] == CLASSES and info["mode"] == "L" and info["null_class_id"] == 3
    assert info["resolution"] == RES and info["params"]["steps"] == 60
    # the folder holds only what the inputs determine: timings, device and versions are metrics
    assert not {"train_seconds", "images_per_s", "device", "environment", "torch", "python"} & set(info)
    pipe = ClassConditionalDDPMPipeline.from_pretrained(model_dir)
    assert pipe.unet.config.num_class_embeds == 4 and pipe.unet.config.in_channels == 1
    assert pipe.unet.config.sample_size == RES
    out = pipe(class_ids=[0, 2], seeds=[1, 2], num_inference_steps=2, guidance_scale=2.0)
    assert out.shape == (2, RES, RES, 1) and out.dtype == np.uint8
    pil = pipe(class_ids=[1], seeds=[3], num_inference_steps=2, output_type="pil")
    assert pil[0].mode == "L" and pil[0].size == (RES, RES)


class _Payload:
    """Unpickling this creates its marker file: proof that a loader executed a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["pickle_as_safetensors", "torch_save_as_safetensors", "legacy_bin"])
def test_a_pickle_in_the_generator_folder_is_refused_never_run(model_dir, tmp_path, how):
    import pickle
    import shutil

    import torch

    folder = tmp_path / "generator"
    shutil.copytree(model_dir, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    marker = tmp_path / "unpickled"
    if how == "legacy_bin":  # only an old pickled .bin: not loaded, not even opened
        weights.unlink()
        torch.save({"w": _Payload(marker)}, weights.with_suffix(".bin"))
    elif how == "pickle_as_safetensors":
        weights.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    else:
        torch.save({"w": _Payload(marker)}, weights)
    with pytest.raises(MissingAssetError, match="dvc repro -f train_generator") as err:
        load_generator(folder)
    assert str(folder) in str(err.value) and not marker.exists()


def test_generate_counts_manifest_and_seeds(model_dir, tmp_path):
    stats = _run(_params(), model_dir, tmp_path, "synthetic")
    out = tmp_path / "synthetic"
    assert stats["generated"] == 9 and stats["reused"] == 0 and stats["per_class"] == {c: 3 for c in CLASSES}
    assert not (tmp_path / ".partial").exists()  # scratch folder moved into place
    records = read_manifest(out / "manifest.jsonl")
    assert [(r["label"], r["index"]) for r in records] == [(c, i) for c in CLASSES for i in range(3)]
    weights = model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    for r in records:
        assert r["source"] == "synthetic" and r["generator"] == "ddpm"
        assert r["seed"] == image_seed(7, r["label"], r["index"])
        assert r["model"] == str(model_dir) and r["model_sha256"] == file_sha256(weights)
        assert r["steps"] == 2 and r["guidance_scale"] == 2.0 and r["resolution"] == RES
        assert "DPMSolver" in r["scheduler"]
        assert Path(r["path"]) == out / "images" / r["label"] / f"{r['index']:05d}.png"
        assert file_sha256(r["path"]) == r["sha256"]
        with Image.open(r["path"]) as im:
            assert im.mode == "L" and im.size == (RES, RES)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(_digests(out))
    # more images per class: the first three keep their pixels (seeds do not depend on N)
    _run(_params(per_class=4), model_dir, tmp_path, "more")
    more = _digests(tmp_path / "more")
    assert len(more) == 12 and all(more[k] == v for k, v in _digests(out).items())


def test_batch_size_does_not_change_pixels(model_dir, tmp_path):
    _run(_params(batch_size=1), model_dir, tmp_path, "b1")
    _run(_params(batch_size=4), model_dir, tmp_path, "b4")
    assert _digests(tmp_path / "b1") == _digests(tmp_path / "b4")
    # the comparison means something only if the pixels are not all clipped to 0 / 255
    pixels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in (tmp_path / "b4").rglob("*.png")])
    assert ((pixels > 0) & (pixels < 255)).mean() > 0.3
    # ... and guidance changes them
    _run(_params(guidance_scale=1.0), model_dir, tmp_path, "g1")
    assert _digests(tmp_path / "g1") != _digests(tmp_path / "b4")


def test_resume_generates_only_missing_and_corrupt_images(model_dir, tmp_path, monkeypatch):
    _run(_params(), model_dir, tmp_path, "reference")
    reference = _digests(tmp_path / "reference")

    # An interrupted run: stop after 7 images were written.
    real_save, saved = gen_mod.save_image, []

    def save_then_die(image, path):
        if len(saved) == 7:
            raise KeyboardInterrupt
        real_save(image, path)
        saved.append(Path(path))

    monkeypatch.setattr(gen_mod, "save_image", save_then_die)
    with pytest.raises(KeyboardInterrupt):  # inline writes: exactly 7 files (threads could race past 7)
        _run(_params(write_threads=0), model_dir, tmp_path, "synthetic")
    monkeypatch.setattr(gen_mod, "save_image", real_save)
    assert not (tmp_path / "synthetic").exists()
    (scratch,) = (tmp_path / ".partial").glob("generate-*")
    assert len(list(scratch.rglob("*.png"))) == 7

    # Lose one image, truncate another (a corrupt leftover), leave a stray temp file.
    saved[2].unlink()
    saved[4].write_bytes(saved[4].read_bytes()[:40])
    (saved[0].parent / ".00000.png.abc.tmp").write_bytes(b"half")
    kept = [p for i, p in enumerate(saved) if i not in (2, 4)]
    mtimes = {p.relative_to(scratch).as_posix(): p.stat().st_mtime_ns for p in kept}

    stats = _run(_params(batch_size=2), model_dir, tmp_path, "synthetic")
    assert stats["reused"] == 5 and stats["generated"] == 4 and stats["corrupt_regenerated"] == 1
    out = tmp_path / "synthetic"
    assert _digests(out) == reference
    assert {k: (out / k).stat().st_mtime_ns for k in mtimes} == mtimes  # reused files untouched
    assert not list(out.rglob("*.tmp"))


def test_ranks_split_the_work(model_dir, tmp_path):
    _run(_params(), model_dir, tmp_path, "reference")
    s1 = _run(_params(), model_dir, tmp_path, "synthetic", rank=1, world_size=2)
    assert s1["generated"] == 4 and not s1["finalised"] and not (tmp_path / "synthetic").exists()
    s0 = _run(_params(), model_dir, tmp_path, "synthetic", rank=0, world_size=2, wait_timeout_s=5)
    assert s0["generated"] == 5 and s0["finalised"]
    assert _digests(tmp_path / "synthetic") == _digests(tmp_path / "reference")


def test_existing_output_is_replaced(model_dir, tmp_path):
    out = tmp_path / "synthetic"
    (out / "images" / "old").mkdir(parents=True)
    (out / "stale.txt").write_text("x")
    _run(_params(per_class=1), model_dir, tmp_path, "synthetic")
    assert not (out / "stale.txt").exists() and len(read_manifest(out / "manifest.jsonl")) == 3


def test_missing_or_wrong_model_dir_is_a_clear_error(model_dir, tmp_path):
    with pytest.raises(MissingAssetError, match="train_generator"):
        _run(_params(), tmp_path / "nope", tmp_path, "synthetic")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingAssetError, match="not a generator folder"):
        _run(_params(), tmp_path / "empty", tmp_path, "synthetic")
    with pytest.raises(DataError, match="trained on"):
        _run(_params(), model_dir, tmp_path, "synthetic", classes=["circle", "dragon"])
    assert not (tmp_path / "synthetic").exists()


def test_train_rejects_labels_outside_classes_json(tmp_path):
    manifest, classes_json = _fake_real_set(tmp_path / "real", per_class=1)
    classes_json.write_text(json.dumps({"classes": CLASSES[:2], "mode": "L"}))
    params = section("train_generator", resolution=RES, block_out_channels=[8, 16], steps=1, batch_size=2)
    with pytest.raises(DataError, match="not in classes.json"):
        _train(params, manifest, classes_json, tmp_path / "gen")
    assert not (tmp_path / "gen").exists()


def test_load_generator_returns_info(model_dir):
    pipe, info = load_generator(model_dir, "cpu")
    assert info["classes"] == CLASSES and pipe.null_class_id == 3
    assert os.fspath(model_dir)  # folder stays in place
