"""`dvc repro` of the generate stage with generate.backend sd, in a temporary repository.

The model is a tiny random-weight SD 1.x folder outside the repository (as a user's
downloaded weights would be); train_generator must skip DDPM training for it.
"""

from __future__ import annotations

import json

import pytest
from dvc_repo import TINY, make_repo, require_fashion_mnist

from synthmix.testing.sd_architectures import build_pipeline

pytestmark = pytest.mark.e2e


def test_dvc_repro_generate_with_stable_diffusion(tmp_path):
    require_fashion_mnist()
    model = tmp_path / "tiny-sd"
    build_pipeline("tiny_sd", seed=0, tokenizer_dir=tmp_path / "tok").save_pretrained(model)
    overrides = {**TINY, "generate": {
        **TINY["generate"], "backend": "sd",
        "sd": {"model": str(model), "steps": 2, "width": 32, "height": 32, "forward_batch": 4},
        "prompt": {"template": "__view__ of a __color__ ({class}):1.4 in __location__",
                   "class_templates": {"trouser": "a photo of (a pair of trousers:1.3)"},
                   "suffix": "best quality, photo-realistic:1.4", "negative": "worst quality:1.4, drawings"},
    }}
    repo = make_repo(tmp_path, overrides)
    ran = repo.repro("train_generator")
    assert ran == {"prepare", "train_generator"}
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
    assert stats["generated"] == 3 * n and stats["backend"] == "sd"
    repo.commit("sd set")
    assert repo.repro("--single-item", "generate") == set()  # up to date

    repo.set_params(generate={**overrides["generate"], "sd": {**overrides["generate"]["sd"], "freeu": {"enabled": True}}})
    assert repo.repro("--single-item", "generate") == {"generate"}
    after = [json.loads(x) for x in (repo.root / "data/synthetic/manifest.jsonl").read_text().splitlines()]
    assert after[0]["freeu"] == {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}
    assert after[0]["sha256"] != lines[0]["sha256"] and after[0]["prompt"] == lines[0]["prompt"]
