"""Study presets: each one validates, and DVC's own -S parser turns its overrides into the merged params."""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from synthmix.config.presets import apply_preset, deep_merge, exp_run_command, load_preset
from synthmix.core.errors import ParamsError
from synthmix.generators.prompts import PromptBuilder

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "presets").glob("*.yaml"))
MODELS = ("sd14", "sd15", "sdxl")
STRATEGIES = ("plain", "freeu", "lora", "hyponet", "hyponet-table")
THESIS = [f"thesis-{m}-{s}" for m in MODELS for s in STRATEGIES]

# The thesis's table 5-7 and 5-8, word for word.
FP = "best quality, 8k, realistic, photo-realistic:1.4"
FN = ("worst quality:1.4, low quality:1.4, normal quality:1.4, watermark:1.4, nsfw:1.4, drawings, abstract art, "
      "cartoons, surrealist painting, conceptual drawing, graphics, bad proportions, human, person, people, man, "
      "woman, girl, boy")
NO_COLOUR = ("cat", "horse")  # "cat"과 "horse" 클래스에 대해서는 "color" 와일드카드를 사용하지 않았다
# strategy -> (template, template for cat and horse, suffix, negative)
TABLE_5_8 = {
    "plain": ("{class}", None, "", ""),
    "freeu": ("{class}", None, "", ""),
    "lora": ("__view__ of a __color__ ({class}):1.4 in __location__",
             "__view__ of a ({class}):1.4 in __location__", FP, ""),
    "hyponet": ("__view__ of a __color__ (__hyponyms/{class}__):1.4 in __location__",
                "__view__ of a (__hyponyms/{class}__):1.4 in __location__", FP, FN),
    "hyponet-table": ("__view__ of a __color__ (__thesis_hyponyms/{class}__):1.4 in __location__",
                      "__view__ of a (__thesis_hyponyms/{class}__):1.4 in __location__", FP, FN),
}


def test_every_study_and_strategy_has_a_preset():
    assert set(THESIS) <= set(PRESETS)
    assert "animal-ratio" in PRESETS


def _merged(name: str):
    """The validated params.yaml + preset."""
    return apply_preset(yaml.safe_load((REPO / "params.yaml").read_text()), load_preset(name, REPO / "presets"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_prompts_are_table_5_8(strategy):
    template, no_colour, suffix, negative = TABLE_5_8[strategy]
    for model in MODELS:
        p = _merged(f"thesis-{model}-{strategy}")
        prompt = p.generate.prompt
        assert (prompt.template, prompt.suffix, prompt.negative) == (template, suffix, negative)
        assert prompt.class_templates == ({c: no_colour for c in NO_COLOUR} if no_colour else {})
        assert prompt.wildcards_dir == "prompts/wildcards" and prompt.class_names == {}
        assert p.prepare.classes == ["automobile", "cat", "horse", "ship", "truck"]
        assert p.generate.backend == ("sdxl" if model == "sdxl" else "sd")
        assert p.generate.sd.freeu.enabled is (strategy == "freeu")
        assert p.generate.sd.trained_lora is (strategy == "lora") and not p.generate.sd.loras  # train_lora stage


def test_thesis_prompts_drawn_from_the_shipped_wildcards():
    """Prompts as the generate stage draws them, from the committed wildcard files (the
    hyponet strategy's in-pipeline lists are a stage output and checked in test_prompts)."""
    wc = REPO / "prompts" / "wildcards"
    lists = {n: (wc / f"{n}.txt").read_text().splitlines() for n in ("view", "color", "location")}
    alt = lambda names: "(?:" + "|".join(map(re.escape, names)) + ")"  # noqa: E731
    for strategy in ("plain", "lora", "hyponet-table"):
        builder = PromptBuilder(_merged(f"thesis-sd15-{strategy}").generate.prompt, base_dir=REPO)
        builder.check(["automobile", "cat", "horse", "ship", "truck"])
        for label in ("automobile", "cat", "horse", "ship", "truck"):
            things = ((wc / "thesis_hyponyms" / f"{label}.txt").read_text().splitlines()
                      if strategy == "hyponet-table" else [label])
            colour = "" if label in NO_COLOUR else alt(lists["color"]) + " "
            pattern = (re.escape(label) if strategy == "plain" else
                       f"{alt(lists['view'])} of a {colour}\\({alt(things)}\\):1\\.4 in {alt(lists['location'])}, "
                       + re.escape(FP))
            for seed in range(5):
                drawn = builder.draw(label, seed)
                assert re.fullmatch(pattern, drawn.prompt), (strategy, drawn.prompt)
                assert drawn.negative == (FN if strategy == "hyponet-table" else "")


def test_preset_script_lists_and_prints_every_thesis_preset(capsys):
    # the script as a user runs it
    listed = subprocess.run([sys.executable, "scripts/preset.py", "--list"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    assert listed == PRESETS
    out = subprocess.run([sys.executable, "scripts/preset.py", "--print", "thesis-sd15-hyponet-table"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("dvc exp run -n thesis-sd15-hyponet-table -S ") and "thesis_hyponyms" in out
    bad = subprocess.run([sys.executable, "scripts/preset.py", "--print", "thesis-sd15-nope"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "error: preset 'thesis-sd15-nope' not found" in bad.stderr
    assert "Traceback" not in bad.stderr
    # every thesis preset validates and prints (in one process)
    main = runpy.run_path(str(REPO / "scripts" / "preset.py"), run_name="preset")["main"]
    for name in THESIS:
        main(["--print", name, "--params", str(REPO / "params.yaml"), "--presets", str(REPO / "presets")])
        assert capsys.readouterr().out.startswith(f"dvc exp run -n {name} -S ")


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
    # the thesis's hyponym lists (table 5-3): one file per thesis class, as published
    counts = {"automobile": 37, "cat": 40, "horse": 38, "ship": 25, "truck": 23}
    for label, n in counts.items():
        lines = (REPO / "prompts/wildcards/thesis_hyponyms" / f"{label}.txt").read_text().splitlines()
        assert len(lines) == n and all(line and line == line.strip() for line in lines)
    assert sorted(p.stem for p in (REPO / "prompts/wildcards/thesis_hyponyms").glob("*.txt")) == sorted(counts)


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
