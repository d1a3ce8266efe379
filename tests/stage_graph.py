"""What each stage of dvc.yaml really depends on, read off the code (used by test_dvc_graph.py).

- The import closure of a stage script: every ``synthmix`` module it imports, at the top or
  inside a function (lazy imports run too, on some path; ``if TYPE_CHECKING:`` blocks never
  run), and the modules those import, plus the ``__init__.py`` of every package on the way, as
  repository paths; plus the schema modules of the params sections the stage lists
  (``synthmix/config/sections/<section>.py``), which the runner imports by name.
- The paths of its command line: a stage function's keyword-only parameters annotated
  ``Input`` / ``Output`` (see ``synthmix.core.paths``) become ``--kebab-case`` options, so the
  kind of every path in ``cmd`` is known without importing the (heavy) stage modules.
- In dvc.yaml a stage lists its data deps first, then its script and its code: a folder when
  the closure holds every ``.py`` file below it, else the files.
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


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                todo += child.orelse  # the else branch runs
            else:
                todo.append(child)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in _runtime_nodes(tree):
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


SECTIONS = SRC / "synthmix" / "config" / "sections"


def param_sections(keys) -> list[str]:
    """The params.yaml sections of a stage's ``params`` entries (``train``, ``prepare.classes``)."""
    out = []
    for item in keys or []:
        names = [item] if isinstance(item, str) else [k for sub in item.values() for k in sub or []]
        out += [k.split(".", 1)[0] for k in names]
    return sorted(set(out))


def import_closure(script: str, params: list | None = None) -> set[str]:
    """Repository paths of the library files a stage script runs (the script itself excluded):
    its import closure plus the schema modules of the params sections it lists."""
    path = ROOT / script
    files = set(_closure_of(path))
    for section in param_sections(params):
        module = SECTIONS / f"{section}.py"
        assert module.is_file(), f"{script}: params section {section!r} has no schema module {module}"
        files |= _closure_of(module)
    return {p.relative_to(ROOT).as_posix() for p in files if p != path}


def python_files(folder: Path) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def grouped(files: set[str]) -> list[str]:
    """``files`` with every folder whose ``.py`` files are all among them written as the folder."""
    out, covered = [], set()
    folders = sorted({Path(f).parent for f in files}, key=lambda p: len(p.parts))
    for folder in folders:
        if any(folder.as_posix().startswith(c + "/") for c in covered):
            continue
        below = python_files(ROOT / folder)
        if below <= files and not any(p.is_file() and p.suffix != ".py" for p in (ROOT / folder).rglob("*")
                                      if "__pycache__" not in p.parts):
            covered.add(folder.as_posix())
    out = sorted(covered) + sorted(f for f in files if not any(f.startswith(c + "/") for c in covered))
    return out


def expand(dep: str) -> set[str]:
    """A dep as the Python files it covers (a folder: every .py below it)."""
    path = ROOT / dep
    return python_files(path) if path.is_dir() else {dep}


def stage_function(script: str) -> tuple[str, str]:
    """(module, function) that a stage script hands to run_stage."""
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "synthmix.runner" and node.module:
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


def format_deps(indent: str, data: list[str], code: list[str], width: int = 110) -> list[str]:
    """``deps:`` as one flow-style list: the data deps first (each stage's inputs read at a
    glance), then the script and its code, wrapped at ``width`` columns."""
    lines, current = [], f"{indent}deps: ["
    lead = indent + "  "
    groups = [data, code] if data else [code]
    for g, group in enumerate(groups):
        for j, dep in enumerate(group):
            last = g == len(groups) - 1 and j == len(group) - 1
            text = f'"{dep}"' if any(c in dep for c in "${}[],#:") else dep  # YAML flow syntax needs quotes
            item = text + ("]" if last else ",")
            if current.strip() not in ("deps: [",) and (len(current) + 1 + len(item) > width or (g > 0 and j == 0)):
                lines.append(current.rstrip() + "\n")
                current = lead
            current += ("" if current.endswith(("[", lead)) and current.strip() in ("deps: [", "") else " ") + item
    lines.append(current.rstrip() + "\n")
    return lines


def _read_deps(lines: list[str], i: int, indent: str) -> tuple[list[str], int]:
    """The deps entries starting at ``lines[i]`` (the ``deps:`` line; block or flow style) and the
    index after them."""
    import yaml

    head = lines[i]
    if head.strip() == "deps:":  # block style
        j, block = i + 1, []
        while j < len(lines) and lines[j].startswith(indent + "  - "):
            block.append(lines[j][len(indent) + 4:].split(" #")[0].strip())
            j += 1
        return block, j
    j, text = i, ""
    while True:  # flow style: up to the closing bracket
        text += lines[j]
        j += 1
        if text.rstrip().endswith("]"):
            break
    return [str(d) for d in yaml.safe_load(text)["deps"]], j


def sync_dvc_yaml(path: Path = ROOT / "dvc.yaml") -> list[str]:
    """Rewrite the deps of every stage in ``dvc.yaml``: its data deps as written, then its script
    and its import closure (grouped by folder); comments and everything else kept; returns the
    changed stages.

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
        if stripped.startswith("deps:") and stage in graph:
            indent = line[: len(line) - len(line.lstrip())]
            old, i = _read_deps(lines, i, indent)
            script, _ = parse_cmd(graph[stage]["cmd"])
            code = [script] + grouped(import_closure(script, graph[stage].get("params")))
            data = [d for d in old if not d.startswith(("src/", "stages/"))]
            if data + code != old:
                changed.append(stage)
            out += format_deps(indent, data, code)
            continue
        out.append(line)
        i += 1
    path.write_text("".join(out), encoding="utf-8")
    return changed


if __name__ == "__main__":
    print("updated deps of:", ", ".join(sync_dvc_yaml()) or "nothing")
