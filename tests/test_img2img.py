"""Image-to-image variants (DA-Fusion): strength draws, SDEdit with the DDPM, manifests, leakage check."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch

from shipped_params import section
from synthmix.core.errors import DataError, ParamsError
from synthmix.data.manifest import read_manifest
from synthmix.generate import generate_synthetic
from synthmix.generators.ddpm import load_generator
from synthmix.generators.img2img import check_no_class_names, draw_strength, make_variant_jobs
from test_generator import CLASSES, RES, _fake_real_set, model_dir  # noqa: F401  (model_dir: fixture)

STRENGTHS = [0.25, 0.5, 0.75, 1.0]


def test_strength_draws_are_reproducible_and_follow_probs():
    probs = [0.1, 0.2, 0.3, 0.4]
    draws = [draw_strength(0, f"{i:064x}", v, STRENGTHS, probs) for i in range(2500) for v in range(4)]
    again = [draw_strength(0, f"{i:064x}", v, STRENGTHS, probs) for i in range(2500) for v in range(4)]
    assert draws == again
    counts = Counter(draws)
    for s, p in zip(STRENGTHS, probs):  # 10,000 draws: a binomial s.d. of at most 0.005
        assert abs(counts[s] / len(draws) - p) < 0.02
    other_seed = [draw_strength(1, f"{i:064x}", v, STRENGTHS, probs) for i in range(2500) for v in range(4)]
    assert other_seed != draws
    assert {draw_strength(0, "ab", v, [0.5], None) for v in range(20)} == {0.5}  # fixed strength


def test_a_variant_depends_on_its_source_not_on_the_other_sources():
    recs = [{"path": f"/x/{i}.png", "label": CLASSES[i % 3], "sha256": f"{i:064x}"} for i in range(6)]
    all_jobs = make_variant_jobs(recs, CLASSES, 3, 0, STRENGTHS, None)
    some_jobs = make_variant_jobs(recs[2:4], CLASSES, 3, 0, STRENGTHS, None)
    assert len(all_jobs) == 18
    by_key = {(j.source_sha256, j.variant): j for j in all_jobs}
    for j in some_jobs:
        twin = by_key[(j.source_sha256, j.variant)]
        assert (j.seed, j.strength, j.relpath) == (twin.seed, twin.strength, twin.relpath)
    with pytest.raises(DataError, match="same sha256"):
        make_variant_jobs(recs[:1] * 2, CLASSES, 1, 0, STRENGTHS, None)


def _source_batch(manifest, n):
    from PIL import Image

    recs = read_manifest(manifest)[:n]
    arr = np.stack([np.asarray(Image.open(r["path"]).convert("L").resize((RES, RES), Image.BICUBIC)) for r in recs])
    return torch.from_numpy(arr).float().unsqueeze(1) / 127.5 - 1.0, arr


def test_sdedit_at_strength_0_returns_the_image_and_at_1_ignores_it(model_dir, tmp_path):  # noqa: F811
    pipe, _ = load_generator(model_dir, "cpu")
    manifest, _ = _fake_real_set(tmp_path / "real")
    image, arr = _source_batch(manifest, 3)
    kw = dict(class_ids=[0, 1, 2], seeds=[5, 6, 7], num_inference_steps=4, guidance_scale=2.0)
    same = pipe(**kw, image=image, strength=0.0)
    assert np.array_equal(same[..., 0], arr)
    from_noise = pipe(**kw)
    assert np.array_equal(pipe(**kw, image=image, strength=1.0), from_noise)
    assert np.array_equal(pipe(**kw, image=-image, strength=1.0), from_noise)  # the input plays no part
    half = pipe(**kw, image=image, strength=0.5)
    assert not np.array_equal(half, from_noise) and not np.array_equal(half[..., 0], arr)
    # a partial edit stays closer to its source than a full one
    dist = lambda out: np.abs(out[..., 0].astype(int) - arr).mean()  # noqa: E731
    assert dist(pipe(**kw, image=image, strength=0.25)) < dist(from_noise)


def _img2img_params(**kw):
    img2img = {"per_image": 2, "strengths": STRENGTHS, "probs": None, "forbid_class_names": True}
    img2img.update(kw.pop("img2img", {}))
    base = {"mode": "img2img", "steps": 4, "guidance_scale": 2.0, "batch_size": 4, "seed": 7, "img2img": img2img}
    base.update(kw)
    return section("generate", **base)


def test_img2img_generate_records_sources_and_is_batch_and_resume_independent(model_dir, tmp_path):  # noqa: F811
    manifest, _ = _fake_real_set(tmp_path / "real")
    sources = read_manifest(manifest)
    run = lambda name, **kw: generate_synthetic(  # noqa: E731
        _img2img_params(**kw), model_dir, tmp_path / name, device="cpu", scratch_root=tmp_path / ".partial",
        show_progress=False, sources=sources)
    stats = run("a")
    records = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert stats["total"] == len(records) == 2 * len(sources)
    by_source = Counter(r["source_sha256"] for r in records)
    assert set(by_source) == {s["sha256"] for s in sources} and set(by_source.values()) == {2}
    src_label = {s["sha256"]: (s["label"], s["path"]) for s in sources}
    for r in records:  # the source path is stored relative to the working directory (no machine path)
        assert not r["source_path"].startswith("/")
        assert (r["label"], os.path.normpath(os.path.abspath(r["source_path"]))) == src_label[r["source_sha256"]]
        assert r["strength"] in STRENGTHS and r["variant"] in (0, 1) and r["img2img"] == "sdedit"
        assert r["steps"] == 4 and r["guidance_scale"] == 2.0 and isinstance(r["seed"], int)
    digests = {r["source_sha256"] + str(r["variant"]): r["sha256"] for r in records}
    run("b", batch_size=3)
    assert {r["source_sha256"] + str(r["variant"]): r["sha256"]
            for r in read_manifest(tmp_path / "b" / "manifest.jsonl")} == digests
    # strength 0 everywhere: every variant is its source image
    run("zero", img2img={"strengths": [0.0]})
    for r in read_manifest(tmp_path / "zero" / "manifest.jsonl"):
        from PIL import Image

        src = np.asarray(Image.open(r["source_path"]).convert("L").resize((RES, RES), Image.BICUBIC))
        assert np.array_equal(np.asarray(Image.open(r["path"])), src)


def test_img2img_without_sources_or_with_a_changed_source_is_a_clear_error(model_dir, tmp_path):  # noqa: F811
    with pytest.raises(DataError, match="needs real source images"):
        generate_synthetic(_img2img_params(), model_dir, tmp_path / "out", device="cpu",
                           scratch_root=tmp_path / ".partial", show_progress=False, sources=[])
    manifest, _ = _fake_real_set(tmp_path / "real")
    sources = read_manifest(manifest)
    with open(sources[0]["path"], "ab") as fh:
        fh.write(b"changed")
    with pytest.raises(DataError, match="changed since its manifest"):
        generate_synthetic(_img2img_params(), model_dir, tmp_path / "out", device="cpu",
                           scratch_root=tmp_path / ".partial", show_progress=False, sources=sources)


@pytest.mark.parametrize("prompt", ["a photo of a t shirt top", "a photo of a T-Shirt Top, studio",
                                    "a sneaker on grass", "a photo of a <t_shirt_top> next to a trouser"])
def test_a_class_name_in_an_img2img_prompt_is_refused(prompt):
    with pytest.raises(ParamsError, match="names a class"):
        check_no_class_names([("t_shirt_top", prompt)], ["t_shirt_top", "trouser", "sneaker"])


@pytest.mark.parametrize("prompt", ["a photo of a <t_shirt_top>", "a photo of a <sneaker> <sneaker>_1",
                                    "a photo of sneakers"])
def test_learnt_tokens_and_other_words_pass_the_leakage_check(prompt):
    check_no_class_names([("t_shirt_top", prompt)], ["t_shirt_top", "trouser", "sneaker"])
