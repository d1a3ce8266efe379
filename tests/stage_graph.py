"""What each stage of dvc.yaml really depends on, read off the code (used by test_dvc_graph.py).

- The import closure of a stage script: every ``synthmix`` module it imports, at the top or
  inside a function (lazy imports run too, on some path), and the modules those import, plus
  the ``__init__.py`` of every package on the way, as repository paths.
- The paths of its command line: a stage function's keyword-only parameters annotated
  ``Input`` / ``Output`` (see ``synthmix.core.stage``) become ``--kebab-case`` options, so the
  kind of every path in ``cmd`` is known without importing the (heavy) stage modules.
"""

from __future__ import annotations

import ast
import shlex
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "synthmix"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "synthmix":
                continue
            found.add(node.module)
            for alias in node.names:  # `from synthmix.pkg import module`
                if module_file(f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; synthmix uses absolute imports")
    return found


@lru_cache(maxsize=None)
def _closure_of(path: Path) -> frozenset[Path]:
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in _imported_modules(current):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # every package __init__ on the way runs too
                f = module_file(".".join(parts[:i]))
                if f is None:
                    raise AssertionError(f"{current}: imports {module}, which does not exist")
                todo.append(f)
    return frozenset(seen)


def import_closure(script: str) -> set[str]:
    """Repository paths of the library files a stage script runs (the script itself excluded)."""
    path = ROOT / script
    return {p.relative_to(ROOT).as_posix() for p in _closure_of(path) if p != path}


def stage_function(script: str) -> tuple[str, str]:
    """(module, function) that a stage script hands to run_stage."""
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "synthmix.core.stage" and node.module:
            return node.module, node.names[0].name
    raise AssertionError(f"{script} imports no stage function")


def path_options(script: str) -> dict[str, str]:
    """``{"--option": "Input" | "Output"}`` of the stage function behind ``script``."""
    module, name = stage_function(script)
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            out = {}
            for arg in node.args.kwonlyargs:
                kind = getattr(arg.annotation, "id", None)
                assert kind in ("Input", "Output"), f"{module}.{name}: option {arg.arg} is not Input/Output"
                out["--" + arg.arg.replace("_", "-")] = kind
            return out
    raise AssertionError(f"{module} has no function {name}")


def parse_cmd(cmd: str) -> tuple[str, dict[str, str]]:
    """(script, {option: value}) of a ``python stages/x.py POS... --opt VALUE ...`` command."""
    words = shlex.split(cmd)
    assert words[0] == "python" and words[1].startswith("stages/"), cmd
    options, i = {}, 2
    while i < len(words):
        if words[i].startswith("--"):
            options[words[i]] = words[i + 1]
            i += 2
        else:
            i += 1
    return words[1], options


def stages(dvc_yaml: dict) -> dict[str, dict]:
    """Stage name -> its definition (``foreach`` stages give their ``do`` block)."""
    return {name: (body["do"] if "do" in body else body) for name, body in dvc_yaml["stages"].items()}


def out_paths(stage: dict) -> set[str]:
    paths = set()
    for key in ("outs", "metrics", "plots"):
        for entry in stage.get(key, []) or []:
            paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def sync_dvc_yaml(path: Path = ROOT / "dvc.yaml") -> list[str]:
    """Rewrite the code deps (``stages/``, ``src/``) of every stage in ``dvc.yaml`` to its import
    closure, keeping comments, data deps and everything else as written; returns changed stages.

    ``python tests/stage_graph.py`` runs it: after adding an import, run it and commit dvc.yaml.
    """
    import yaml

    text = path.read_text(encoding="utf-8")
    graph = stages(yaml.safe_load(text))
    lines = text.splitlines(keepends=True)
    out, changed, stage, i = [], [], None, 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":") and not stripped.startswith("#"):
            stage = stripped[:-1]
        out.append(line)
        i += 1
        if stripped == "deps:" and stage in graph:
            indent = line[: len(line) - len(line.lstrip())] + "  "
            block = []
            while i < len(lines) and lines[i].startswith(indent + "- "):
                block.append(lines[i][len(indent) + 2:].strip())
                i += 1
            script, _ = parse_cmd(graph[stage]["cmd"])
            code = [script] + sorted(import_closure(script))
            data = [d for d in block if not d.startswith(("src/", "stages/"))]
            new = code + data
            if new != block:
                changed.append(stage)
            out += [f"{indent}- {d}\n" for d in new]
    path.write_text("".join(out), encoding="utf-8")
    return changed


if __name__ == "__main__":
    print("updated deps of:", ", ".join(sync_dvc_yaml()) or "nothing")
