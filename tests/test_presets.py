"""Study presets: each one validates, and DVC's own -S parser turns its overrides into the merged params."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from synthmix.config.presets import deep_merge, exp_run_command, load_preset
from synthmix.core.errors import ParamsError

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "presets").glob("*.yaml"))


def test_every_study_and_strategy_has_a_preset():
    for model in ("sd14", "sd15", "sdxl"):
        for strategy in ("plain", "freeu", "lora", "hyponet"):
            assert f"thesis-{model}-{strategy}" in PRESETS
    assert "animal-ratio" in PRESETS


@pytest.mark.parametrize("name", [p for p in PRESETS if p.startswith(("thesis-sd", "animal"))])
def test_preset_command_sets_exactly_the_merged_params(name, tmp_path):
    cmd = exp_run_command(name, REPO / "params.yaml", REPO / "presets")  # validates the merged params
    assert cmd[:5] == ["dvc", "exp", "run", "-n", name]
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(str(params), cmd[6::2])  # what `dvc exp run -S` does to params.yaml
    expected = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), load_preset(name, REPO / "presets"))
    assert yaml.safe_load(params.read_text()) == expected


def test_hyponet_preset_settings():
    p = load_preset("thesis-sdxl-hyponet", REPO / "presets")
    assert p["generate"]["backend"] == "sdxl" and p["generate"]["sd"]["refiner_switch"] == 0.8
    assert "__color__" not in p["generate"]["prompt"]["class_templates"]["cat"]
    assert p["generate"]["prompt"]["negative"].startswith("worst quality:1.4")


def test_bad_presets_are_named(tmp_path):
    (tmp_path / "loop.yaml").write_text("extends: [loop]\n")
    (tmp_path / "bad.yaml").write_text("params: {generate: {sd: {steps: 0}}}\n")
    with pytest.raises(ParamsError, match="extends itself"):
        load_preset("loop", tmp_path)
    with pytest.raises(ParamsError, match="generate.sd.steps = 0"):
        exp_run_command("bad", REPO / "params.yaml", tmp_path)
    with pytest.raises(ParamsError, match="not found"):
        load_preset("nope", tmp_path)
    (tmp_path / "typo.yaml").write_text("params: {generate: {sd: {modle: x, loras: [{path: a, scal: 2}]}}}\n")
    with pytest.raises(ParamsError, match=r"generate.sd.modle: unknown key \(allowed: model, model_kind") as err:
        exp_run_command("typo", REPO / "params.yaml", tmp_path)
    assert "generate.sd.loras.0.scal: unknown key (allowed: path, scale, weight_name, classes)" in str(err.value)
