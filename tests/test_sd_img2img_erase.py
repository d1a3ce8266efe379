"""Stable Diffusion image-to-image variants (DA-Fusion / Real Guidance) and ESD concept erasing,
on tiny random-weight SD 1.x / SDXL pipelines (CPU, 32 px, 2 steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from shipped_params import section
from synthmix.core.errors import ParamsError
from synthmix.data.manifest import file_sha256, read_manifest, write_manifest
from synthmix.generate import generate_synthetic
from synthmix.generators.stable_diffusion import regenerate
from synthmix.personalize.erase import erase_concepts, esd_loss, esd_target
from synthmix.testing.sd_architectures import build_pipeline
from test_sd_backend import REPO, models  # noqa: F401  (models: the tiny SD folders fixture)


def _sources(root, n=2):
    rng = np.random.default_rng(0)
    recs = []
    for label in ("cat", "ship"):
        for i in range(n):
            path = root / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
            recs.append({"path": str(path), "label": label, "source": "real", "sha256": file_sha256(path)})
    write_manifest(root / "train.jsonl", recs)
    return read_manifest(root / "train.jsonl")


def _params(models, family="sd", template="a photo of a {class}", **img2img):  # noqa: F811
    sd = {"model": str(models["tiny_sd" if family == "sd" else "tiny_sdxl"]), "steps": 4, "width": 32, "height": 32,
          "forward_batch": 2}
    i2i = {"per_image": 2, "strengths": [0.5, 1.0], "probs": None, "forbid_class_names": False, **img2img}
    return section("generate", backend=family, mode="img2img", batch_size=3, seed=5, sd=sd, img2img=i2i,
                   prompt={"template": template, "wildcards_dir": str(REPO / "prompts" / "wildcards")})


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_sd_img2img_variants_record_their_source_and_regenerate(models, tmp_path, family):  # noqa: F811
    sources = _sources(tmp_path / "real")
    run = lambda name, **kw: generate_synthetic(  # noqa: E731
        _params(models, family, **kw), models["generator"], tmp_path / name, device="cpu",
        scratch_root=tmp_path / ".partial", show_progress=False, sources=sources)
    stats = run("a")
    records = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert stats["total"] == len(records) == 2 * len(sources)
    assert {r["source_sha256"] for r in records} == {s["sha256"] for s in sources}
    for r in records:
        assert r["img2img"] == f"{family}_img2img" and r["strength"] in (0.5, 1.0)
        assert r["prompt"] == f"a photo of a {r['label']}" and Image.open(r["path"]).size == (32, 32)
    if family == "sd":  # a variant made again from its manifest line alone (its source file still there)
        again = tmp_path / "again.png"
        regenerate(records[1]).save(again)
        assert file_sha256(again) == records[1]["sha256"]
    # strength changes the picture; the source image matters below strength 1
    half = [r for r in records if r["strength"] == 0.5]
    assert half, "the seeded draw gave no 0.5 variant"
    flipped = [{**s, "path": s["path"]} for s in sources]
    for s in flipped:
        Image.open(s["path"]).transpose(Image.FLIP_LEFT_RIGHT).save(s["path"])
        s["sha256"] = file_sha256(s["path"])
    stats = generate_synthetic(_params(models, family), models["generator"], tmp_path / "b", device="cpu",
                               scratch_root=tmp_path / ".partial", show_progress=False, sources=flipped)
    assert stats["generated"] == len(records)


def test_a_class_name_in_the_dafusion_prompt_stops_before_any_image(models, tmp_path):  # noqa: F811
    sources = _sources(tmp_path / "real")
    with pytest.raises(ParamsError, match="names a class"):
        generate_synthetic(_params(models, forbid_class_names=True), models["generator"], tmp_path / "out",
                           device="cpu", scratch_root=tmp_path / ".partial", show_progress=False, sources=sources)
    assert not (tmp_path / "out").exists()


def _gap(unet, frozen, x, t, cond, uncond) -> float:
    """How far the concept's guidance direction of ``unet`` points along the original model's:
    <eps(x, c) - eps*(x), eps*(x, c) - eps*(x)> (positive = still steering towards the concept)."""
    with torch.no_grad():
        e0 = frozen(x, t, encoder_hidden_states=uncond).sample
        ep = frozen(x, t, encoder_hidden_states=cond).sample
        ec = unet(x, t, encoder_hidden_states=cond).sample
    return float(((ec - e0) * (ep - e0)).sum())


def test_the_esd_objective_turns_the_erased_concept_around_on_a_tiny_sd():
    import copy

    pipe = build_pipeline("tiny_sd", seed=0)
    unet, frozen = pipe.unet, copy.deepcopy(pipe.unet).requires_grad_(False).eval()

    def encode(texts):
        ids = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return pipe.text_encoder(ids)[0]

    with torch.no_grad():
        cond, uncond = encode(["a cat"]), encode([""])
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, unet.config.in_channels, 8, 8, generator=g), torch.tensor([500])
    # at the start the target is the mirror image of the concept direction
    target = esd_target(frozen, x, t, cond, uncond, 1.0)
    with torch.no_grad():
        e0 = frozen(x, t, encoder_hidden_states=uncond).sample
        ep = frozen(x, t, encoder_hidden_states=cond).sample
    assert torch.allclose(target - e0, -(ep - e0), atol=1e-5)
    before = _gap(unet, frozen, x, t, cond, uncond)
    assert before > 0 and float(esd_loss(unet, frozen, x, t, cond, uncond, 1.0).detach()) > 0
    p = section("erase", iterations=30, lr=1e-3, ddim_steps=4, seed=0)
    stats = erase_concepts(unet, encode, {"cat": "a cat"}, p, 64, pipe.scheduler.config, torch.device("cpu"),
                           show_progress=False)
    after = _gap(unet, frozen, x, t, cond, uncond)
    assert after < 0.5 * before  # the model no longer steers towards "a cat"
    assert stats["iterations"] == 30 and stats["trained_tensors"] == stats["unet_tensors"]  # method full
    # cross-attention only (ESD-x) trains fewer tensors
    unet2 = copy.deepcopy(frozen).requires_grad_(True)
    stats_x = erase_concepts(unet2, encode, {"cat": "a cat"}, section("erase", method="xattn", iterations=1, ddim_steps=4),
                             64, pipe.scheduler.config, torch.device("cpu"), show_progress=False)
    assert 0 < stats_x["trained_tensors"] < stats_x["unet_tensors"]
