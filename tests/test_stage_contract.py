"""What `dvc repro` relies on to re-run exactly what a change touches, checked on the code.

- A code change re-runs only the stages of its study: a segmentation module only ``seg_*``
  stages, a few-shot module only ``fewshot_*`` stages, Stable Diffusion / personalisation code only
  the stages that generate or personalise, a params section's schema only the stages that list it.
- Params cannot rot: a stage run by DVC reads only the keys its dvc.yaml entry lists (reading
  another is an error naming it), every listed key exists, and a param naming a local file must
  name one of the stage's deps.
- Every path a stage's ``cmd`` passes is used by the stage function.
- Packages import each other in one direction (lazy imports count; ``TYPE_CHECKING`` blocks do not).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import yaml

from stage_graph import ROOT, SRC, _imported_modules, expand, module_file, parse_cmd, stage_function, stages

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = stages(DVC)
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))

SD_STAGES = {"generate", "train_lora", "train_textual_inversion", "erase", "fewshot_variants"}
SUMMARY_STAGES = {"summarize", "report", "fewshot_summarize", "seg_summarize"}


def stages_depending_on(path: str) -> set[str]:
    return {name for name, st in STAGES.items() if any(path in expand(d) for d in st["deps"] if "${" not in d)}


# (module, the stages an edit of it may re-run): one representative of every rule
RULES = [
    ("src/synthmix/segmentation/networks/bisenetv2.py", lambda s: s.startswith("seg_")),
    ("src/synthmix/segmentation/spade.py", lambda s: s.startswith("seg_")),
    ("src/synthmix/segmentation/models.py", lambda s: s.startswith("seg_")),
    ("src/synthmix/config/sections/seg_train.py", lambda s: s.startswith("seg_")),
    ("src/synthmix/fewshot/probe.py", lambda s: s.startswith("fewshot_")),
    ("src/synthmix/config/sections/fewshot.py", lambda s: s.startswith("fewshot_")),
    ("src/synthmix/generators/stable_diffusion.py", lambda s: s in SD_STAGES),
    ("src/synthmix/personalize/lora.py", lambda s: s in SD_STAGES),
    ("src/synthmix/personalize/erase.py", lambda s: s in SD_STAGES),
    ("src/synthmix/generators/adapters.py", lambda s: s in SD_STAGES),
    ("src/synthmix/reporting/classification.py", lambda s: s in SUMMARY_STAGES),
    ("src/synthmix/reporting/format.py", lambda s: s in SUMMARY_STAGES),
]


@pytest.mark.parametrize("module,allowed", RULES, ids=[m for m, _ in RULES])
def test_a_module_change_reruns_only_its_study(module, allowed):
    assert (ROOT / module).is_file(), module
    affected = stages_depending_on(module)
    assert affected, f"no stage depends on {module}: is the rule list stale?"
    wrong = sorted(s for s in affected if not allowed(s))
    assert not wrong, f"editing {module} would re-run {wrong}"


@pytest.mark.parametrize("section", sorted(PARAMS))
def test_a_section_schema_change_reruns_only_the_stages_that_read_it(section):
    module = f"src/synthmix/config/sections/{section}.py"
    readers = {name for name, st in STAGES.items()
               if any(str(k).split(".")[0] == section for k in st.get("params") or [])}
    assert stages_depending_on(module) == readers


@pytest.mark.parametrize("name", sorted(STAGES))
def test_listed_params_exist(name):
    for key in STAGES[name].get("params") or []:
        node = PARAMS
        for part in str(key).split("."):
            assert isinstance(node, dict) and part in node, f"{name} lists params key {key!r}, not in params.yaml"
            node = node[part]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_cmd_path_is_used_by_the_stage(name):
    script, options = parse_cmd(STAGES[name]["cmd"])
    module, func = stage_function(script)
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func)
    used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    unused = [o for o in options if o.removeprefix("--").replace("-", "_") not in used]
    assert not unused, f"{name}: {unused} are passed in cmd but {module}.{func} never reads them"


# ---- package layers ---------------------------------------------------------------------------

# bottom to top: a package may import only packages before it (and itself)
LAYERS = ["core", "stats", "answer", "config", "data", "generators", "personalize", "generate", "mixes", "classify",
          "quality", "hyponet", "fewshot", "segmentation", "reporting", "testing", "runner"]


def _package(path: Path) -> str:
    rel = path.relative_to(SRC / "synthmix")
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else ""


def test_packages_import_in_one_direction():
    order = {p: i for i, p in enumerate(LAYERS)}
    found = {_package(p) for p in (SRC / "synthmix").iterdir() if p.name != "__pycache__" and p.name != "py.typed"}
    assert found - {""} <= set(order), f"packages without a layer: {sorted(found - {''} - set(order))}"
    wrong = []
    for path in (SRC / "synthmix").rglob("*.py"):
        me = _package(path)
        for module in _imported_modules(path):
            other = module.split(".")[1] if module.count(".") else ""
            if other and me and other != me and order[other] > order[me]:
                wrong.append(f"{path.relative_to(SRC)} ({me}) imports {module} ({other})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


# ---- the runner: params and file deps as dvc.yaml lists them ----------------------------------


def _stage_repo(tmp_path: Path, params: list, deps: list | None = None, raw: dict | None = None) -> None:
    raw = raw if raw is not None else PARAMS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"probe": {
        "cmd": "python stages/probe.py", "deps": deps or ["stages/probe.py"], "params": params}}}))


def _run(tmp_path, monkeypatch, func, stage="probe"):
    from synthmix.runner import run_stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", stage)
    run_stage(func, [])


def test_a_stage_reads_only_what_dvc_yaml_lists(tmp_path, monkeypatch, capsys):
    seen = {}

    def listed(params):
        seen["lr"], seen["classes"] = params.train.lr, params.prepare.classes

    _stage_repo(tmp_path, ["train", "prepare.classes"])
    _run(tmp_path, monkeypatch, listed)
    assert seen == {"lr": PARAMS["train"]["lr"], "classes": PARAMS["prepare"]["classes"]}

    def unlisted(params):
        return params.prepare.seed

    with pytest.raises(SystemExit) as exc:
        _run(tmp_path, monkeypatch, unlisted)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "stage probe reads params key 'prepare.seed'" in err and "add `- prepare.seed`" in err


def test_a_typo_in_another_section_does_not_stop_a_stage(tmp_path, monkeypatch, capsys):
    raw = {**PARAMS, "seg_train": {**PARAMS["seg_train"], "epochz": 3}}
    _stage_repo(tmp_path, ["train"], raw=raw)
    _run(tmp_path, monkeypatch, lambda params: params.train.lr)  # seg_train is not loaded
    _stage_repo(tmp_path, ["seg_train"], raw=raw)
    with pytest.raises(SystemExit):
        _run(tmp_path, monkeypatch, lambda params: params.seg_train.epochs)
    assert "seg_train.epochz: unknown key" in capsys.readouterr().err


def test_a_file_param_must_be_a_dep(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "models" / "resnet.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    raw = {**PARAMS, "train": {**PARAMS["train"], "weights": "models/resnet.safetensors"}}
    _stage_repo(tmp_path, ["train"], raw=raw)
    with pytest.raises(SystemExit):
        _run(tmp_path, monkeypatch, lambda params: None)
    err = capsys.readouterr().err
    assert "train.weights = 'models/resnet.safetensors'" in err and "add `- models/resnet.safetensors`" in err
    _stage_repo(tmp_path, ["train"], deps=["stages/probe.py", "models"], raw=raw)  # a folder dep holding it
    _run(tmp_path, monkeypatch, lambda params: None)
    keyword = {**PARAMS, "train": {**PARAMS["train"], "weights": "offline_imagenet",
                                   "arch": "tf_efficientnet_lite0"}}
    _stage_repo(tmp_path, ["train"], raw=keyword)  # a keyword names no file
    _run(tmp_path, monkeypatch, lambda params: None)


def test_the_threads_param_sets_torch_threads(tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        _stage_repo(tmp_path, ["threads"], raw={**PARAMS, "threads": 1})
        _run(tmp_path, monkeypatch, lambda params: None)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            monkeypatch.delenv(var, raising=False)


def test_every_computing_stage_lists_device_and_threads():
    for name, st in STAGES.items():
        keys = [str(k) for k in st.get("params") or []]
        if "device" in keys:
            assert "threads" in keys, f"{name} computes (it lists device) but does not list threads"
