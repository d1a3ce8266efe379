"""The Stable Diffusion backends on tiny random-weight SD 1.x / SDXL pipelines (CPU, 32 px, 2 steps).

The pipelines have the real architectures (UNet2DConditionModel, AutoencoderKL, CLIP text
encoders) at toy widths and the real CLIP tokenizer rebuilt offline; they are saved with
``save_pretrained`` and loaded back through ``generate.sd.model`` like downloaded weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from shipped_params import section
from synthmix import generate as gen_mod
from synthmix.config import validate_params
from synthmix.config.sections.generate import GenerateParams
from synthmix.core.errors import MissingAssetError, ParamsError
from synthmix.data.manifest import file_sha256, read_manifest
from synthmix.generate import generate_synthetic
from synthmix.generators.base import Job
from synthmix.generators.prompts import ImagePrompt, to_compel
from synthmix.generators.stable_diffusion import StableDiffusionBackend, regenerate
from synthmix.testing.sd_architectures import build_pipeline
from synthmix.testing.sd_single_file import export_single_file

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "ship"]
TEMPLATE = "__view__ of a __color__ ({class}):1.4 in __location__"
FP = "best quality, 8k, realistic, photo-realistic:1.4"
FN = "worst quality:1.4, low quality:1.4, watermark:1.4, drawings, human"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny SD 1.x, SDXL and SDXL-refiner folders (save_pretrained), a LoRA file and a class list."""
    root = tmp_path_factory.mktemp("sd")
    tok = root / "clip-tokenizer"
    out = {}
    for kind in ("tiny_sd", "tiny_sdxl", "tiny_sdxl_refiner"):
        pipe = build_pipeline(kind, seed=0, tokenizer_dir=tok)
        pipe.save_pretrained(root / kind)
        out[kind] = root / kind
    out["lora"] = _make_lora(root / "tiny_sd", root / "lora")
    gen = root / "generator"
    gen.mkdir()
    (gen / "generator.json").write_text(json.dumps({"classes": CLASSES}))
    out["generator"] = gen
    return out


def _make_lora(model: Path, out: Path) -> Path:
    """A random (non-zero) LoRA on the UNet attention projections, made with peft, saved as diffusers does."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(model)
    torch.manual_seed(1)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    for name, p in pipe.unet.named_parameters():  # make the effect visible at toy scale
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=layers)
    return out / "pytorch_lora_weights.safetensors"


def _params(models, family="sd", **kw) -> GenerateParams:
    sd = {"model": str(models["tiny_sd" if family == "sd" else "tiny_sdxl"]), "steps": 2, "width": 32, "height": 32,
          "forward_batch": 2, **kw.pop("sd", {})}
    base = {"backend": family, "per_class": 3, "batch_size": 3, "seed": 5, "sd": sd,
            "prompt": {"template": TEMPLATE, "suffix": FP, "negative": FN,
                       "class_templates": {"cat": "__view__ of a ({class}):1.4 in __location__"},
                       "wildcards_dir": str(REPO / "prompts" / "wildcards")}}
    base.update(kw)
    return section("generate", **base)


def _run(params, models, root: Path, name: str, **kw) -> dict:
    return generate_synthetic(params, models["generator"], root / name, device="cpu",
                              scratch_root=root / ".partial", show_progress=False, **kw)


def _digests(out: Path) -> dict[str, str]:
    return {Path(r["path"]).relative_to(out).as_posix(): r["sha256"] for r in read_manifest(out / "manifest.jsonl")}


def test_sd_set_manifest_batch_resume_and_regenerate(models, tmp_path, monkeypatch):
    _run(_params(models, batch_size=1), models, tmp_path, "b1")
    stats = _run(_params(models, batch_size=4), models, tmp_path, "b4")
    assert stats["generated"] == 6 and stats["backend"] == "sd"
    reference = _digests(tmp_path / "b4")
    assert _digests(tmp_path / "b1") == reference  # batch size does not change the bytes
    records = read_manifest(tmp_path / "b4" / "manifest.jsonl")
    pixels = np.stack([np.asarray(Image.open(r["path"])) for r in records])
    assert pixels.shape == (6, 32, 32, 3) and pixels.std() > 5  # not blank
    assert len({r["sha256"] for r in records}) == 6
    for r in records:
        assert r["generator"] == "sd" and r["scheduler"] == "dpmpp_2m_karras" and r["steps"] == 2
        assert r["guidance_scale"] == 7.5 and (r["width"], r["height"]) == (32, 32)
        assert r["negative_prompt"] == FN and r["prompt"].endswith(FP) and r["freeu"] is None and r["loras"] == []
        assert ("colour" not in r["prompt"]) if r["label"] == "cat" else True
        assert f"({r['label']}):1.4" in r["prompt"]
    assert len({r["prompt"] for r in records}) > 3  # each image draws its own prompt

    # an interrupted run resumes and ends with the same bytes
    real_save, saved = gen_mod.save_image, []

    def save_then_die(image, path):
        if len(saved) == 4:
            raise KeyboardInterrupt
        real_save(image, path)
        saved.append(path)

    monkeypatch.setattr(gen_mod, "save_image", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(_params(models, write_threads=0), models, tmp_path, "resumed")
    monkeypatch.setattr(gen_mod, "save_image", real_save)
    stats = _run(_params(models), models, tmp_path, "resumed")
    assert stats["reused"] == 4 and stats["generated"] == 2
    assert _digests(tmp_path / "resumed") == reference

    # one image made again from its manifest line alone
    rec = records[4]
    again = tmp_path / "again.png"
    gen_mod.save_image(regenerate(rec), again)
    assert file_sha256(again) == rec["sha256"]


@pytest.fixture(scope="module")
def sd_backend(models):
    return StableDiffusionBackend(_params(models), models["generator"], torch.device("cpu"), "sd")


def test_prompt_weights_and_negative_prompts_move_the_embeddings(sd_backend):
    embed = lambda p, n="": sd_backend.conditioning(to_compel(p), to_compel(n))  # noqa: E731
    plain, _ = embed("a photo of a cat")
    same, _ = embed("a photo of a (cat:1.0)")
    up, _ = embed("a photo of a (cat:1.5)")
    up2, _ = embed("a photo of a (cat):2.0")
    down, _ = embed("a photo of a (cat:0.5)")
    assert torch.allclose(plain, same, atol=1e-5)
    d_up, d_up2, d_down = (x - plain for x in (up, up2, down))
    assert 0 < d_up.norm() < d_up2.norm()  # a larger weight moves further ...
    cos = lambda a, b: float((a * b).sum() / (a.norm() * b.norm()))  # noqa: E731
    assert cos(d_up, d_up2) > 0.9  # ... in the same direction,
    assert cos(d_up, d_down) < 0  # and a down-weight moves the other way
    # the negative prompt becomes the unconditional embedding; weights apply to it too
    _, neg = embed("a photo of a cat", "blurry")
    _, neg_w = embed("a photo of a cat", "blurry:1.5")
    _, empty = embed("a photo of a cat", "")
    assert not torch.allclose(neg, empty) and not torch.allclose(neg, neg_w)
    # long prompts: no truncation at 77 tokens; positive and negative padded to the same length
    long_pos, long_neg = embed(", ".join(["a red cat on a green mat"] * 20), "blurry")
    assert long_pos.shape[1] >= 154 and long_pos.shape == long_neg.shape
    # and the negative prompt changes the image
    job = Job("cat", 0, 0, 11)
    a = sd_backend.generate([job], [ImagePrompt("a cat", "", "a cat", "")])[0]
    b = sd_backend.generate([job], [ImagePrompt("a cat", "blurry", "a cat", "blurry")])[0]
    assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 0.5


def test_freeu_and_lora_change_the_image_and_are_recorded(models, sd_backend):
    job = Job("ship", 1, 0, 123)
    base = np.asarray(sd_backend.generate([job])[0], float)
    freeu = StableDiffusionBackend(_params(models, sd={"freeu": {"enabled": True}}), models["generator"],
                                   torch.device("cpu"), "sd")
    lora = StableDiffusionBackend(_params(models, sd={"loras": [{"path": str(models["lora"]), "scale": 0.8}]}),
                                  models["generator"], torch.device("cpu"), "sd")
    for other in (freeu, lora):
        assert np.abs(np.asarray(other.generate([job])[0], float) - base).mean() > 0.5
    assert freeu.record_fields(job)["freeu"] == {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}
    (rec,) = lora.record_fields(job)["loras"]
    assert rec["scale"] == 0.8 and rec["sha256"] == file_sha256(models["lora"])
    # a LoRA for one class only (the thesis: one LoRA per class) leaves the other classes as they were
    per_class = StableDiffusionBackend(
        _params(models, sd={"loras": [{"path": str(models["lora"]), "scale": 0.8, "classes": ["ship"]}]}),
        models["generator"], torch.device("cpu"), "sd")
    cat = Job("cat", 0, 0, 7)
    both = per_class.generate([cat, job])
    assert np.array_equal(np.asarray(both[0]), np.asarray(sd_backend.generate([cat])[0]))
    assert np.array_equal(np.asarray(both[1]), np.asarray(lora.generate([job])[0]))
    assert per_class.record_fields(cat)["loras"] == [] and per_class.record_fields(job)["loras"] == [rec]
    keys = {b.content_key()["freeu"] is None for b in (sd_backend, freeu)}
    assert keys == {True, False} and lora.content_key() != sd_backend.content_key()


def test_single_file_checkpoint_loads_offline_with_config(models, sd_backend, tmp_path, monkeypatch):
    """An LDM-layout .safetensors (as A1111/ComfyUI share them) through from_single_file, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    single = export_single_file(models["tiny_sd"], tmp_path / "tiny-sd.safetensors")
    params = _params(models, sd={"model": str(single), "config": str(models["tiny_sd"])})
    backend = StableDiffusionBackend(params, models["generator"], torch.device("cpu"), "sd")
    assert backend.kind == "single_file" and backend.model_sha256 == file_sha256(single)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(sd_backend.pipe, name).state_dict(), getattr(backend.pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    job = Job("cat", 0, 0, 42)
    assert np.array_equal(np.asarray(backend.generate([job])[0]), np.asarray(sd_backend.generate([job])[0]))


def test_sdxl_with_refiner_and_schedulers(models, tmp_path):
    params = _params(models, "sdxl", per_class=1, sd={"refiner": str(models["tiny_sdxl_refiner"]),
                                                      "scheduler": "euler_a", "freeu": {"enabled": True}})
    _run(params, models, tmp_path, "xl")
    recs = read_manifest(tmp_path / "xl" / "manifest.jsonl")
    assert [r["generator"] for r in recs] == ["sdxl", "sdxl"] and recs[0]["refiner_switch"] == 0.8
    assert recs[0]["freeu"] == {"b1": 1.1, "b2": 1.2, "s1": 0.6, "s2": 0.4}
    gen_mod.save_image(regenerate(recs[1]), tmp_path / "again.png")  # euler a: noise from per-image generators
    assert file_sha256(tmp_path / "again.png") == recs[1]["sha256"]
    _run(_params(models, "sdxl", per_class=1, sd={"scheduler": "ddim", "save_size": 16}), models, tmp_path, "ddim")
    small = read_manifest(tmp_path / "ddim" / "manifest.jsonl")
    assert {r["sha256"] for r in small}.isdisjoint(r["sha256"] for r in recs)
    for r in small:  # training reads the 16 px copy; the full image is listed beside it
        assert Image.open(r["path"]).size == (16, 16) and "images_16px/" in r["path"]
        full = tmp_path / "ddim" / r["full_path"]
        assert Image.open(full).size == (32, 32) and file_sha256(full) == r["full_sha256"]


def test_missing_weights_are_a_clear_error_before_any_work(models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model, match in [
        ("/nowhere/v1-5-pruned-emaonly.safetensors", "generate.sd.model = '/nowhere/.*no such file"),
        ("some-org/some-model", "generate.sd.model = 'some-org/some-model' \\(hub\\) could not be loaded"),
        (str(tmp_path), "not a diffusers pipeline folder"),
    ]:
        with pytest.raises(MissingAssetError, match=match):
            _run(_params(models, sd={"model": model}), models, tmp_path, "out")
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"\0" * 16)
    with pytest.raises(MissingAssetError, match="generate.sd.config"):
        _run(_params(models, sd={"model": str(single)}), models, tmp_path, "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".partial").exists()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["generate"]["backend"] = "sdxl"
    with pytest.raises(ParamsError, match="generate.sd.model"):
        validate_params(raw)


def test_stage_two_processes_equal_one_and_stage_errors(models, tmp_path):
    """stages/generate.py under RANK/WORLD_SIZE (as torchrun sets them) vs one process."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["prepare"]["classes"] = CLASSES
    raw["mix"]["names"] = ["pct0", "pct50"]
    raw["prepare"]["train_per_class"] = 4
    raw["generate"] = json.loads(_params(models, per_class=2).model_dump_json())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}

    def stage(out: str, rank: int = 0, world: int = 1, wait: bool = True):
        cmd = [sys.executable, str(REPO / "stages" / "generate.py"), "--params", str(params),
               "--model", str(models["generator"]), "--wildcards", raw["generate"]["prompt"]["wildcards_dir"],
               "--lora", str(tmp_path / "lora"), "--textual-inversion", str(tmp_path / "ti"),  # unused: flags off
               "--erased", str(tmp_path / "erased"), "--real", str(tmp_path / "train.jsonl"),  # unused: txt2img
               "--out", str(tmp_path / out / "synthetic"), "--metrics", str(tmp_path / f"{out}.json")]
        proc = subprocess.Popen(cmd, env={**env, "RANK": str(rank), "WORLD_SIZE": str(world)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc.communicate(timeout=600) + (proc.returncode,) if wait else proc

    two = [stage("two", r, 2, wait=False) for r in (0, 1)]
    one = stage("one")
    results = [p.communicate(timeout=600) + (p.returncode,) for p in two]
    assert one[2] == 0 and all(r[2] == 0 for r in results), (one, results)
    assert (tmp_path / "one/synthetic/manifest.jsonl").read_bytes() == (tmp_path / "two/synthetic/manifest.jsonl").read_bytes()
    # how the run went (ranks, seconds) is in its timings file, outside the hashed metrics
    assert json.loads((tmp_path / "timings" / "two.json").read_text())["world_size"] == 2

    raw["generate"]["sd"]["model"] = "/nowhere/sd-v1-4.ckpt"
    params.write_text(yaml.safe_dump(raw))
    out, err, code = stage("bad")
    assert code == 2 and "error: generate.sd.model = '/nowhere/sd-v1-4.ckpt'" in err and "Traceback" not in err
