"""LoRA and textual-inversion training (synthmix.personalize) on tiny random-weight SD 1.x / SDXL.

The pipelines are synthmix.testing.sd_architectures' toy-width SD 1.x / SDXL with the real
CLIP tokenizer, saved with save_pretrained and loaded through generate.sd.model; training
images are 16 px coloured squares upsampled to 32 px. One torch thread: the CPU here is
shared with other jobs, and two spinning OpenMP threads on two busy cores are many times
slower than one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shipped_params import section, shipped
from synthmix.config import validate_params
from synthmix.core.errors import DataError, MissingAssetError, ParamsError
from synthmix.data.manifest import file_sha256, read_manifest
from synthmix.generators.adapters import INDEX, load_embeddings_into
from synthmix.generators.base import Job
from synthmix.generators.prompts import PromptBuilder
from synthmix.generators.stable_diffusion import StableDiffusionBackend, regenerate
from synthmix.personalize.data import Upsampler, captions_for
from synthmix.personalize.lora import train_lora_stage, train_loras
from synthmix.personalize.textual_inversion import initial_rows, train_textual_inversion_stage, train_textual_inversions
from synthmix.personalize.training import encode_text, latent_posteriors, load_sd_model, noise_loss, tokenize
from synthmix.testing.sd_architectures import build_pipeline

CLASSES = ["cat", "ship"]
COLOURS = {"cat": (200, 60, 40), "ship": (40, 80, 200)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Tiny SD 1.x and SDXL folders, a real-train manifest (4 images per class), a class list."""
    root = tmp_path_factory.mktemp("personalize")
    out = {}
    for kind in ("tiny_sd", "tiny_sdxl"):
        build_pipeline(kind, seed=0, tokenizer_dir=root / "tok").save_pretrained(root / kind)
        out[kind] = root / kind
    rng = np.random.default_rng(0)
    lines = []
    for c in CLASSES:
        for i in range(4):
            a = np.full((16, 16, 3), 230, np.uint8)
            x, y = rng.integers(0, 8, 2)
            a[y : y + 8, x : x + 8] = COLOURS[c]
            path = root / "real" / "images" / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(path)
            lines.append(json.dumps({"path": f"images/{c}/{i}.png", "label": c, "source": "real",
                                     "sha256": file_sha256(path)}))
    (root / "real" / "train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "real" / "classes.json").write_text(json.dumps({"classes": CLASSES, "mode": "RGB"}))
    gen = root / "generator"
    gen.mkdir()
    (gen / "generator.json").write_text(json.dumps({"classes": CLASSES}))
    out.update(root=root, manifest=root / "real" / "train.jsonl", classes=root / "real" / "classes.json", generator=gen)
    return out


def _params(assets, family="sd", lora=None, ti=None, generate=None):
    """The shipped params with the tiny model as generate.sd.model and section overrides."""
    raw = copy.deepcopy(shipped())
    raw["prepare"]["classes"] = CLASSES
    raw["generate"]["backend"] = family
    raw["generate"]["sd"].update(model=str(assets["tiny_sd" if family == "sd" else "tiny_sdxl"]), steps=2,
                                 width=32, height=32, forward_batch=1, trained_lora=True, textual_inversion=True)
    raw["generate"]["prompt"]["wildcards_dir"] = str(Path(__file__).resolve().parents[1] / "prompts" / "wildcards")
    raw["train_lora"].update({**dict(images_per_class=2, batch_size=2, epochs=2, resolution=32, rank=4, alpha=8,
                                     checkpoint_every=0), **(lora or {})})
    raw["train_textual_inversion"].update({**dict(images_per_class=2, batch_size=2, steps=2, resolution=32,
                                                  checkpoint_every=0), **(ti or {})})
    for k, v in (generate or {}).items():
        raw["generate"]["sd"][k] = v
    return validate_params(raw)


def _records(assets, classes=CLASSES):
    return [r for r in read_manifest(assets["manifest"]) if r["label"] in classes]


def _train_lora(assets, out, classes=CLASSES, family="sd", **lora):
    return train_loras(_params(assets, family, lora=lora), _records(assets, classes), classes, out,
                       manifest=assets["manifest"], device="cpu", show_progress=False)


def _train_ti(assets, out, classes=CLASSES, family="sd", **ti):
    return train_textual_inversions(_params(assets, family, ti=ti), _records(assets, classes), classes, out,
                                    device="cpu", show_progress=False)


def _fixed_batch_loss(params, pipe, texts: list[str], images: list[dict], repeats: int = 6) -> float:
    """The noise-prediction loss of ``pipe`` on a fixed batch: fixed images, noise and timesteps."""
    from synthmix.personalize.data import Upsampler, load_pixels

    model = load_sd_model(params, torch.device("cpu"), 32, "no", pipe=pipe)
    _, pixels = load_pixels(images, Upsampler("bicubic", 32, None, torch.device("cpu"), "x"))
    mean, _ = latent_posteriors(model, pixels)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        hidden, pooled = encode_text(model, tokenize(model, texts))
        losses = [noise_loss(model, mean * model.pipe.vae.config.scaling_factor, hidden, pooled, g)
                  for _ in range(repeats)]
    return float(torch.stack(losses).mean())


def _image(pipe, prompt: str) -> np.ndarray:
    out = pipe(prompt, num_inference_steps=2, width=32, height=32, generator=torch.Generator().manual_seed(7),
               output_type="np")
    return out.images[0]


# ------------------------------------------------------------------------------------------ LoRA
def test_lora_loss_goes_down_and_the_file_loads_in_diffusers(assets, tmp_path):
    from diffusers import StableDiffusionPipeline
    from peft.tuners.lora import LoraLayer

    stats = _train_lora(assets, tmp_path / "lora", ["cat"], images_per_class=2, epochs=30, lr=1e-2,
                        scope="shared", optimizer="adamw")
    assert stats["trained"] == 1 and stats["runs"]["shared"]["steps"] == 30
    index = json.loads((tmp_path / "lora" / INDEX).read_text())
    assert index["backend"] == "sd" and index["scope"] == "shared" and index["trained"][0]["class"] is None
    assert index["trained"][0]["captions"] == ["a photo of a cat"] and len(index["trained"][0]["images"]) == 2
    lora_file = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    assert index["trained"][0]["sha256"] == file_sha256(lora_file)

    params = _params(assets)
    base = StableDiffusionPipeline.from_pretrained(assets["tiny_sd"])
    tuned = StableDiffusionPipeline.from_pretrained(assets["tiny_sd"])
    tuned.load_lora_weights(str(tmp_path / "lora"))  # diffusers' default file name
    layers = [m for m in tuned.unet.modules() if isinstance(m, LoraLayer)]
    assert layers and all(abs(m.scaling[k] - 8 / 4) < 1e-9 for m in layers for k in m.scaling)  # alpha / rank kept
    images = [r for r in _records(assets, ["cat"]) if r["sha256"] in index["trained"][0]["images"]]
    before = _fixed_batch_loss(params, base, ["a photo of a cat"] * 2, images)
    after = _fixed_batch_loss(params, tuned, ["a photo of a cat"] * 2, images)
    assert after < 0.9 * before, (before, after)
    assert np.abs(_image(tuned, "a photo of a cat") - _image(base, "a photo of a cat")).mean() > 1e-3


def test_per_class_loras_in_generate_apply_to_their_class_only(assets, tmp_path):
    from safetensors import safe_open

    _train_lora(assets, tmp_path / "lora", lr=5e-3, train_text_encoder=True)  # UNet + text encoder, per class
    index = json.loads((tmp_path / "lora" / INDEX).read_text())
    assert [t["file"] for t in index["trained"]] == ["cat.safetensors", "ship.safetensors"]
    keys = list(safe_open(str(tmp_path / "lora" / "ship.safetensors"), "pt").keys())
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("unet.") for k in keys)
    on = _params(assets, generate={"textual_inversion": False})
    off = _params(assets, generate={"textual_inversion": False, "trained_lora": False})
    backend = StableDiffusionBackend(on.generate, assets["generator"], torch.device("cpu"), "sd",
                                     lora_dir=tmp_path / "lora")
    plain = StableDiffusionBackend(off.generate, assets["generator"], torch.device("cpu"), "sd")
    only_cat = StableDiffusionBackend(
        _params(assets, generate={"textual_inversion": False, "trained_lora": False, "loras": [
            {"path": str(tmp_path / "lora" / "cat.safetensors"), "classes": ["cat"]}]}).generate,
        assets["generator"], torch.device("cpu"), "sd")
    cat, ship = Job("cat", 0, 0, 11), Job("ship", 1, 0, 12)
    both = backend.generate([cat, ship])
    assert np.abs(np.asarray(both[0], float) - np.asarray(plain.generate([cat])[0], float)).mean() > 0.5
    assert np.array_equal(np.asarray(both[0]), np.asarray(only_cat.generate([cat])[0]))
    (rec,) = backend.record_fields(cat)["loras"]
    assert rec["path"].endswith("cat.safetensors") and rec["sha256"] == index["trained"][0]["sha256"]
    assert backend.record_fields(ship)["loras"][0]["sha256"] == index["trained"][1]["sha256"]
    assert backend.content_key() != plain.content_key()


# ------------------------------------------------------------------------------------------ textual inversion
def test_textual_inversion_token_loads_moves_and_changes_the_image(assets, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file, save_file

    stats = _train_ti(assets, tmp_path / "ti", ["cat"], steps=30, lr=2e-2, num_vectors=2, flip_p=0.0)
    assert stats["runs"]["cat"]["steps"] == 30
    index = json.loads((tmp_path / "ti" / INDEX).read_text())
    (rec,) = index["trained"]
    assert rec["token"] == "<cat>" and rec["num_vectors"] == 2 and rec["initializer"] == "cat"
    learned = load_file(str(tmp_path / "ti" / "cat" / "learned_embeds.safetensors"))["<cat>"]

    pipe = StableDiffusionPipeline.from_pretrained(assets["tiny_sd"])
    init = initial_rows(pipe.text_encoder.get_input_embeddings().weight.detach(),
                        pipe.tokenizer.encode("cat", add_special_tokens=False), 2)
    assert learned.shape == init.shape == (2, 32)
    assert (learned - init).norm() > 0.05 * init.norm()  # moved away from the initializer
    save_file({"<cat>": init.contiguous()}, str(tmp_path / "init.safetensors"))
    start = StableDiffusionPipeline.from_pretrained(assets["tiny_sd"])
    start.load_textual_inversion(str(tmp_path / "init.safetensors"), token="<cat>")
    pipe.load_textual_inversion(str(tmp_path / "ti" / "cat" / "learned_embeds.safetensors"), token="<cat>")
    ids = pipe.tokenizer.convert_tokens_to_ids(["<cat>", "<cat>_1"])
    assert pipe.tokenizer.unk_token_id not in ids
    assert torch.allclose(pipe.text_encoder.get_input_embeddings().weight[ids], learned)
    prompt = "a photo of a <cat> <cat>_1"
    images = [r for r in _records(assets, ["cat"]) if r["sha256"] in rec["images"]]
    before = _fixed_batch_loss(_params(assets), start, [prompt] * 2, images)
    after = _fixed_batch_loss(_params(assets), pipe, [prompt] * 2, images)
    # 1.1363 -> 1.1328: the random toy UNet listens little to its text, so the drop is small (0.3 %),
    # but far above float noise (the run is deterministic)
    assert after < before - 1e-3, (before, after)
    assert np.abs(_image(pipe, prompt) - _image(start, prompt)).mean() > 1e-4

    # through generate: {class} becomes the token, the manifest line names the file, regenerate repeats it
    params = _params(assets, ti={}, generate={"trained_lora": False})
    backend = StableDiffusionBackend(params.generate, assets["generator"], torch.device("cpu"), "sd",
                                     classes=["cat"], ti_dir=tmp_path / "ti")
    off = _params(assets, generate={"trained_lora": False, "textual_inversion": False})
    plain = StableDiffusionBackend(off.generate, assets["generator"], torch.device("cpu"), "sd", classes=["cat"])
    job = Job("cat", 0, 0, 5)
    fields = backend.record_fields(job)
    assert fields["prompt"] == "a photo of a <cat>" and fields["textual_inversion"]["sha256"] == rec["sha256"]
    assert backend.expand_tokens("a <cat>, (<cat>):1.2") == "a <cat> <cat>_1, (<cat> <cat>_1):1.2"
    image = backend.generate([job])[0]
    assert np.abs(np.asarray(image, float) - np.asarray(plain.generate([job])[0], float)).mean() > 0.5
    path = tmp_path / "img.png"
    from synthmix.core.atomic import PNG_OPTIONS, save_image

    save_image(image, path, **PNG_OPTIONS)
    again = tmp_path / "again.png"
    save_image(regenerate({**fields, "label": "cat"}), again, **PNG_OPTIONS)
    assert file_sha256(again) == file_sha256(path)


def test_prompt_templates_with_learned_tokens():
    p = section("generate.prompt", template="a photo of a {class} by __hyponyms/{class}__",
                class_templates={"ship": "a {token} ({class}) at sea"})
    builder = PromptBuilder(p, tokens={"cat": "<cat>", "ship": "<ship>"})
    assert builder.template("cat") == "a photo of a <cat> by __hyponyms/cat__"
    assert builder.template("ship") == "a <ship> (ship) at sea"
    assert PromptBuilder(p).template("ship") == "a ship (ship) at sea"  # no token: {token} is the class text


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("kind", ["lora", "textual_inversion"])
def test_interrupted_training_resumes_to_the_same_weights(assets, tmp_path, kind):
    """A run killed after step 3 of the second class resumes from its step-2 checkpoint (the first
    class is not retrained) and ends with the files of an uninterrupted run, byte for byte."""
    if kind == "lora":  # Adafactor and a warm-up + cosine lr: their states must come back too
        over = dict(optimizer="adafactor", lr=1.2e-3, epochs=5, images_per_class=2, batch_size=1,
                    lr_scheduler="cosine", warmup_steps=2, checkpoint_every=2, random_flip=True)
        params = _params(assets, lora=over)
        train = lambda out, **kw: train_loras(params, _records(assets), CLASSES, out,  # noqa: E731
                                              manifest=assets["manifest"], device="cpu", show_progress=False, **kw)
        files = ["cat.safetensors", "ship.safetensors", INDEX]
    else:
        over = dict(steps=5, batch_size=1, gradient_accumulation_steps=2, checkpoint_every=2, lr_scheduler="linear",
                    warmup_steps=1)
        params = _params(assets, ti=over)
        train = lambda out, **kw: train_textual_inversions(params, _records(assets), CLASSES, out,  # noqa: E731
                                                           device="cpu", show_progress=False, **kw)
        files = ["cat/learned_embeds.safetensors", "ship/learned_embeds.safetensors", INDEX]
    scratch = tmp_path / "scratch"
    train(tmp_path / "whole", scratch_root=scratch)
    assert not scratch.exists()  # removed when finished

    def die(run, step):
        if run == "ship" and step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", scratch_root=scratch, on_step=die)
    (partial,) = scratch.iterdir()
    assert sorted(p.name for p in (partial / "checkpoints" / "ship").iterdir()) == ["step-00000002"]
    assert not (tmp_path / "resumed").exists()
    stats = train(tmp_path / "resumed", scratch_root=scratch)
    assert stats["runs"]["ship"]["resumed_at"] == 2 and stats["runs"]["cat"]["reused"]  # cat is not retrained
    assert stats["steps_run"] == stats["runs"]["ship"]["steps"] - 2
    for f in files:
        assert file_sha256(tmp_path / "resumed" / f) == file_sha256(tmp_path / "whole" / f), f


# ------------------------------------------------------------------------------------------ SDXL
def test_sdxl_lora_and_textual_inversion_smoke(assets, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from peft.tuners.lora import LoraLayer
    from safetensors.torch import load_file

    _train_lora(assets, tmp_path / "lora", ["cat"], family="sdxl", epochs=1, train_text_encoder=True)
    _train_ti(assets, tmp_path / "ti", ["cat"], family="sdxl", steps=2)
    emb = load_file(str(tmp_path / "ti" / "cat" / "learned_embeds.safetensors"))
    assert sorted(emb) == ["clip_g", "clip_l"] and emb["clip_l"].shape == (4, 32) and emb["clip_g"].shape == (4, 32)
    pipe = StableDiffusionXLPipeline.from_pretrained(assets["tiny_sdxl"])
    pipe.load_lora_weights(str(tmp_path / "lora"), weight_name="cat.safetensors")
    for module in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):  # UNet and both text encoders adapted
        assert any(isinstance(m, LoraLayer) for m in module.modules())
    load_embeddings_into(pipe, "sdxl", tmp_path / "ti" / "cat" / "learned_embeds.safetensors", "<cat>")
    for tok in (pipe.tokenizer, pipe.tokenizer_2):
        assert tok.convert_tokens_to_ids("<cat>_3") != tok.unk_token_id
    params = _params(assets, "sdxl")
    backend = StableDiffusionBackend(params.generate, assets["generator"], torch.device("cpu"), "sdxl",
                                     classes=["cat"], lora_dir=tmp_path / "lora", ti_dir=tmp_path / "ti")
    job = Job("cat", 0, 0, 3)
    fields = backend.record_fields(job)
    assert fields["prompt"] == "a photo of a <cat>" and len(fields["loras"]) == 1 and fields["textual_inversion"]
    assert np.asarray(backend.generate([job])[0]).shape == (32, 32, 3)


# ------------------------------------------------------------------------------------------ skip, errors
def test_ddpm_backend_and_flags_off_write_only_the_index(tmp_path):
    params = validate_params(copy.deepcopy(shipped()))  # the default: backend ddpm
    for stage, name in ((train_lora_stage, "lora"), (train_textual_inversion_stage, "ti")):
        out, metrics = tmp_path / name, tmp_path / f"{name}.json"
        erased = {"erased": tmp_path / "unused"} if stage is train_textual_inversion_stage else {}
        stage(params, train=tmp_path / "unused.jsonl", classes=tmp_path / "unused.json", out=out, metrics=metrics,
              **erased)
        assert [p.name for p in out.iterdir()] == [INDEX]
        index = json.loads((out / INDEX).read_text())
        assert index["backend"] == "ddpm" and index["trained"] == [] and "no text encoder" in index["reason"]
        assert json.loads(metrics.read_text())["trained"] == 0
    raw = copy.deepcopy(shipped())
    raw["generate"]["backend"], raw["generate"]["sd"]["model"] = "sd", "/nowhere/sd15"
    train_lora_stage(validate_params(raw), train=tmp_path / "u", classes=tmp_path / "u", out=tmp_path / "off",
                     metrics=tmp_path / "off.json")
    assert json.loads((tmp_path / "off" / INDEX).read_text())["reason"].startswith("generate.sd.trained_lora = false")
    # and generate refuses an index without adapters when the flag is on
    with pytest.raises(DataError, match="lists no trained adapters"):
        from synthmix.generators.adapters import trained_loras

        trained_loras(tmp_path / "lora", "sd")


def test_errors_name_the_param(assets, tmp_path):
    raw = copy.deepcopy(shipped())
    raw["train_lora"]["images_total"] = 10
    with pytest.raises(ParamsError, match="images_per_class or images_total"):
        validate_params(raw)
    raw["train_lora"]["images_per_class"], raw["train_lora"]["scope"] = None, "shared"
    validate_params(raw)
    raw["train_lora"].update(upsample="realesrgan")
    with pytest.raises(ParamsError, match="realesrgan_weights"):
        validate_params(raw)
    with pytest.raises(MissingAssetError, match="train_lora.realesrgan_weights = '/nope.pth'"):
        Upsampler("realesrgan", 64, "/nope.pth", torch.device("cpu"), "train_lora")
    with pytest.raises(MissingAssetError, match="train_lora.caption_model is not set"):
        _train_lora(assets, tmp_path / "x", ["cat"], caption="blip")
    with pytest.raises(MissingAssetError, match="train_lora.caption_model = '/no/blip'"):
        _train_lora(assets, tmp_path / "x", ["cat"], caption="blip", caption_model="/no/blip")
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001
        with pytest.raises(ParamsError, match="adamw8bit needs the bitsandbytes package"):
            _train_lora(assets, tmp_path / "x", ["cat"], optimizer="adamw8bit")
    with pytest.raises(DataError, match="images_per_class = 9, but class 'cat' has 4"):
        _train_lora(assets, tmp_path / "x", ["cat"], images_per_class=9)


def _tiny_blip(folder: Path) -> Path:
    """A random-weight BLIP captioner (transformers) with a 12-word BERT vocabulary, save_pretrained."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "square", "photo", "of", "cat", "on"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    text = dict(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, encoder_hidden_size=16, bos_token_id=2, sep_token_id=3, pad_token_id=0)
    vision = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=BertTokenizer(str(folder / "vocab.txt"))).save_pretrained(folder)
    return folder


def test_caption_file_blip_and_realesrgan_upsampling(assets, tmp_path):
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    records = _records(assets, ["cat"])[:2]
    table = tmp_path / "captions.jsonl"
    table.write_text(json.dumps({"image": records[0]["sha256"], "caption": "a red square"}) + "\n"
                     + json.dumps({"image": Path(records[1]["path"]).name, "caption": "a red box"}) + "\n")
    p = section("train_lora", caption="file", caption_file=str(table),
                caption_template="a photo of a {class}, {caption}")
    assert captions_for(p, records, [], assets["manifest"], torch.device("cpu")) == [
        "a photo of a cat, a red square", "a photo of a cat, a red box"]
    with pytest.raises(DataError, match="no caption for 1 of"):
        captions_for(p, _records(assets, ["cat"])[:3], [], assets["manifest"], torch.device("cpu"))
    blip = section("train_lora", caption="blip", caption_model=str(_tiny_blip(tmp_path / "blip")),
                   caption_template="{caption}, a photo of a {class}")
    images = [Image.open(r["path"]).convert("RGB") for r in records]
    caps = captions_for(blip, records, images, assets["manifest"], torch.device("cpu"))
    assert len(caps) == 2 and all(c.endswith(", a photo of a cat") and len(c) > len(", a photo of a cat") for c in caps)

    torch.manual_seed(0)  # a tiny Real-ESRGAN-architecture (RRDB) x4 net, as a user's weights file
    net = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "x4.safetensors"))
    up = Upsampler("realesrgan", 40, str(tmp_path / "x4.safetensors"), torch.device("cpu"), "train_lora")
    assert up.weights_sha256 == file_sha256(tmp_path / "x4.safetensors")
    image = Image.open(records[0]["path"]).convert("RGB")
    assert up(image).size == (40, 40)  # 16 -> 64 by the net, then bicubic to 40


def test_lora_presets_train_in_the_pipeline_with_the_thesis_recipe():
    from synthmix.config.presets import apply_preset, load_preset

    repo = Path(__file__).resolve().parents[1]
    for model, size in (("sd15", 512), ("sdxl", 1024)):
        p = apply_preset(copy.deepcopy(shipped()), load_preset(f"thesis-{model}-lora", repo / "presets"))
        t = p.train_lora
        assert p.generate.sd.trained_lora and not p.generate.sd.loras
        assert (t.images_per_class, t.scope, t.batch_size, t.epochs) == (40, "per_class", 5, 7)
        assert (t.mixed_precision, t.optimizer, t.lr, t.lr_scheduler, t.warmup_steps, t.resolution) == (
            "bf16", "adafactor", 1.2e-3, "constant", 0, None)
        assert (t.resolution or {"sd": 512, "sdxl": 1024}[p.generate.backend]) == size
