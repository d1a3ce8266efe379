"""dvc.yaml tells the truth about every stage: deps = what the script imports and reads, outs = what it writes.

A dependency kept by hand drifts: an edit to a module a stage imports but does not list would
leave `dvc repro` saying "up to date" on results that are not. These tests read each stage's
import closure and command-line paths off the code (tests/stage_graph.py) and fail on any gap
in either direction, printing the exact lines to add or remove.
"""

from __future__ import annotations

import ast

import pytest
import yaml

from stage_graph import ROOT, SRC, expand, import_closure, out_paths, parse_cmd, path_options, stages

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
STAGES = stages(DVC)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_python_deps_are_the_import_closure(name):
    stage = STAGES[name]
    script, _ = parse_cmd(stage["cmd"])
    declared = set().union(*(expand(d) for d in stage["deps"] if d.startswith(("src/", "stages/"))))
    needed = import_closure(script, stage.get("params")) | {script}
    assert not needed - declared, f"{name}: add to deps (python tests/stage_graph.py does): {sorted(needed - declared)}"
    assert not declared - needed, f"{name}: deps the stage never imports: {sorted(declared - needed)}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_paths_are_deps_and_outs(name):
    stage = STAGES[name]
    script, options = parse_cmd(stage["cmd"])
    kinds = path_options(script)
    assert set(options) == set(kinds), f"{name}: cmd options {sorted(options)} != the stage function's {sorted(kinds)}"
    inputs = {v for k, v in options.items() if kinds[k] == "Input"}
    outputs = {v for k, v in options.items() if kinds[k] == "Output"}
    # deps named by params (``${prepare.root}``) are no cmd paths: the runner checks them
    data_deps = {d for d in stage["deps"] if not d.startswith(("src/", "stages/")) and "${" not in d.split("${item")[0]}
    assert data_deps == inputs, f"{name}: data deps {sorted(data_deps)} != Input paths in cmd {sorted(inputs)}"
    assert out_paths(stage) == outputs, f"{name}: outs/metrics/plots {sorted(out_paths(stage))} != Output paths {sorted(outputs)}"


def test_every_stage_script_is_in_the_graph():
    scripts = {parse_cmd(s["cmd"])[0] for s in STAGES.values()}
    assert scripts == {p.relative_to(ROOT).as_posix() for p in (ROOT / "stages").glob("*.py")}


def test_no_import_cycles():
    """The library's module graph (top-level imports only: what runs at import time) has no cycle."""
    graph = {}
    for path in SRC.rglob("*.py"):
        mod = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps = set()
        for node in tree.body:  # module level only; TYPE_CHECKING blocks do not run
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synthmix"):
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("synthmix")}
        graph[mod] = deps
    state: dict[str, int] = {}

    def visit(mod: str, trail: list[str]) -> None:
        if state.get(mod) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(mod):] + [mod]))
        if state.get(mod) == 2 or mod not in graph:
            return
        state[mod] = 1
        for dep in sorted(graph[mod]):
            visit(dep, trail + [mod])
        state[mod] = 2

    for mod in sorted(graph):
        visit(mod, [])
