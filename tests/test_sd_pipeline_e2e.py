"""`dvc repro` of the generate stage with generate.backend sd, in a temporary repository.

The model is a tiny random-weight SD 1.x folder outside the repository (as a user's
downloaded weights would be); train_generator must skip DDPM training for it.
"""

from __future__ import annotations

import json

import pytest

from dvc_repo import TINY, make_repo, require_fashion_mnist
from shipped_params import shipped
from synthmix.testing.sd_architectures import build_pipeline

pytestmark = pytest.mark.e2e


def test_dvc_repro_generate_with_stable_diffusion(tmp_path):
    require_fashion_mnist()
    model = tmp_path / "tiny-sd"
    build_pipeline("tiny_sd", seed=0, tokenizer_dir=tmp_path / "tok").save_pretrained(model)
    overrides = {**TINY, "generate": {
        **TINY["generate"], "backend": "sd",
        "sd": {**shipped()["generate"]["sd"], "model": str(model), "steps": 2, "width": 32, "height": 32,
               "forward_batch": 4},
        "prompt": {**shipped()["generate"]["prompt"],
                   "template": "__view__ of a __color__ ({class}):1.4 in __location__",
                   "class_templates": {"trouser": "a photo of (a pair of trousers:1.3)"},
                   "suffix": "best quality, photo-realistic:1.4", "negative": "worst quality:1.4, drawings"},
    }}
    repo = make_repo(tmp_path, overrides, file_deps={"generate.sd.model": str(model)})
    ran = repo.repro("train_generator", "train_lora", "train_textual_inversion")
    assert ran == {"prepare", "train_generator", "train_lora", "train_textual_inversion", "erase"}  # the last three: index only
    info = json.loads((repo.root / "models/generator/generator.json").read_text())
    assert info["trained"] is False and info["classes"] == TINY["prepare"]["classes"]
    assert json.loads((repo.root / "metrics/generator.json").read_text())["steps"] == 0

    assert repo.repro("--single-item", "generate") == {"generate"}
    lines = [json.loads(x) for x in (repo.root / "data/synthetic/manifest.jsonl").read_text().splitlines()]
    n = TINY["generate"]["per_class"]
    assert len(lines) == 3 * n and {r["generator"] for r in lines} == {"sd"}
    assert all(r["prompt"].startswith("a photo of (a pair of trousers:1.3)") for r in lines if r["label"] == "trouser")
    assert any(" of a " in r["prompt"] and "(sneaker):1.4" in r["prompt"] for r in lines)
    assert (repo.root / "data/synthetic" / lines[0]["path"]).read_bytes()[:4] == b"\x89PNG"
    stats = json.loads((repo.root / "metrics/generate.json").read_text())
    run = json.loads((repo.root / "metrics/timings/generate.json").read_text())  # how the run went: not hashed
    assert stats["total"] == run["generated"] == 3 * n and stats["backend"] == "sd"
    repo.commit("sd set")
    assert repo.repro("--single-item", "generate") == set()  # up to date

    sd = overrides["generate"]["sd"]
    repo.set_params(generate={**overrides["generate"], "sd": {**sd, "freeu": {**sd["freeu"], "enabled": True}}})
    assert repo.repro("--single-item", "generate") == {"generate"}
    after = [json.loads(x) for x in (repo.root / "data/synthetic/manifest.jsonl").read_text().splitlines()]
    assert after[0]["freeu"] == {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}
    assert after[0]["sha256"] != lines[0]["sha256"] and after[0]["prompt"] == lines[0]["prompt"]


def test_dvc_repro_trained_lora_and_tokens_through_evaluate(tmp_path):
    """train_lora and train_textual_inversion on the tiny SD folder, their outputs used by generate
    (per-class LoRA and token per class, file hashes in every manifest line), then mix -> train ->
    evaluate; retraining the LoRAs re-runs generate but not the textual inversion."""
    require_fashion_mnist()
    model = tmp_path / "tiny-sd"
    build_pipeline("tiny_sd", seed=0, tokenizer_dir=tmp_path / "tok").save_pretrained(model)
    overrides = {**TINY,
                 "mix": {"names": ["pct0", "pct50"]}, "train": {**TINY["train"], "seeds": [0]},
                 "generate": {**TINY["generate"], "backend": "sd", "per_class": 6,
                              "sd": {**shipped()["generate"]["sd"], "model": str(model), "steps": 2, "width": 32,
                                     "height": 32, "forward_batch": 2, "trained_lora": True,
                                     "textual_inversion": True}},
                 "train_lora": {"images_per_class": 2, "batch_size": 2, "epochs": 1, "resolution": 32, "rank": 4,
                                "alpha": 4},
                 "train_textual_inversion": {"images_per_class": 2, "batch_size": 2, "steps": 2, "resolution": 32,
                                             "num_vectors": 2}}
    repo = make_repo(tmp_path, overrides, file_deps={"generate.sd.model": str(model)})
    repo.env["OMP_NUM_THREADS"] = "1"  # a 2-core machine shared with other jobs: one thread per stage
    chain = ["prepare", "train_lora", "erase", "train_textual_inversion", "train_generator", "generate", "qc", "mix@pct50",
             "train@pct50-0", "evaluate@pct50-0"]
    assert repo.repro("--single-item", *chain) == set(chain)
    classes = TINY["prepare"]["classes"]
    lora = json.loads((repo.root / "models/lora/index.json").read_text())
    ti = json.loads((repo.root / "models/textual_inversion/index.json").read_text())
    assert [t["class"] for t in lora["trained"]] == classes == [t["class"] for t in ti["trained"]]
    lora_sha = {t["class"]: t["sha256"] for t in lora["trained"]}
    ti_sha = {t["class"]: t["sha256"] for t in ti["trained"]}
    lines = [json.loads(x) for x in (repo.root / "data/synthetic/manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 6
    for r in lines:  # each class: its own LoRA and token, recorded with the files' hashes
        assert [lo["sha256"] for lo in r["loras"]] == [lora_sha[r["label"]]]
        assert r["loras"][0]["path"] == f"models/lora/{r['label']}.safetensors"
        assert r["textual_inversion"]["sha256"] == ti_sha[r["label"]] and f"<{r['label']}>" in r["prompt"]
    assert "accuracy" in json.loads((repo.root / "metrics/cls/pct50-seed0.json").read_text())
    repo.commit("personalized")

    repo.set_params(train_lora={**overrides["train_lora"], "rank": 2})
    ran = repo.repro("--single-item", "train_lora", "train_textual_inversion", "generate")
    assert ran == {"train_lora", "generate"}
    again = [json.loads(x) for x in (repo.root / "data/synthetic/manifest.jsonl").read_text().splitlines()]
    assert again[0]["loras"][0]["sha256"] != lines[0]["loras"][0]["sha256"]
    assert again[0]["textual_inversion"] == lines[0]["textual_inversion"]
