"""A copy of this project in a temporary git repository, for end-to-end `dvc` runs.

Git and DVC configuration are isolated from the user's (HOME, global/system config dirs),
and the copy's own `src/` is on PYTHONPATH so `dvc repro` runs the library it tracks.
Used by every end-to-end test: ``make_repo(tmp_path, {"prepare": {...}, ...})``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
TIMEOUT = 1800  # seconds for any one command (a loaded 2-core machine can take over 15 min for the tiny repro)

# The default experiment shrunk to seconds: 3 classes, a few images, one epoch.
TINY = {
    "prepare": {"classes": ["t_shirt_top", "trouser", "sneaker"], "train_per_class": 12,
                "val_per_class": 6, "test_per_class": 20},
    "train_generator": {"resolution": 16, "block_out_channels": [8, 16], "steps": 4, "batch_size": 8},
    "generate": {"per_class": 12, "steps": 2, "batch_size": 16, "img2img": {"per_image": 2}},
    "mix": {"names": ["pct0", "pct50", "pct100", "aug50"]},
    "train": {"seeds": [0, 1], "epochs": 1, "batch_size": 16},
    # fidelity: 8 images per class and set through Inception (a few seconds); small report sheets
    "fidelity": {"max_per_class": 8, "kid_subsets": 10},
    "report": {"sheet_per_class": 8},
    # few-shot branch: 1-2 shots x 2 trials, 2 variants per image, a probe of 2 short epochs
    "fewshot": {"shots": [1, 2], "trials": [0, 1], "samples_per_epoch": 64,
                "classifier": {"epochs": 2, "input_size": 32}},
    # segmentation branch: 32 px scenes, a few pairs, 2-3 optimiser steps per model
    "seg_prepare": {"image_size": 32, "train_count": 16, "val_count": 4, "test_count": 4,
                    "items_per_scene": [1, 2], "item_size": [12, 20]},
    "seg_train_labels": {"resolution": 16, "block_out_channels": [8, 16], "steps": 3, "batch_size": 8},
    "seg_generate_labels": {"count": 4, "steps": 2},
    "seg_train_spade": {"ngf": 8, "ndf": 8, "spade_hidden": 8, "z_dim": 8, "steps": 2, "batch_size": 4},
    "seg_filter": {"epochs": 1},  # when a test turns it on: one epoch of the scoring segmenter
    "seg_mix": {"names": ["rep0", "rep25"]},
    "seg_train": {"models": ["bisenetv2", "ppliteseg_t"], "seeds": [0], "epochs": 1, "batch_size": 8},
    "seg_evaluate": {"overlay_count": 2},
}


def project_files() -> list[str]:
    """Files a clone would have: tracked plus new, not ignored; no outputs of an earlier run."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split("\n")
    # outputs of the committed default run, including the git-tracked HypoNet wildcard files
    skip = ("data/", "models/", "metrics/", "dvc.lock", "prompts/wildcards/hyponyms/")
    return [f for f in out if f and not f.startswith(skip) and (REPO / f).is_file()]


def require_fashion_mnist() -> None:
    if FASHION_MNIST.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{FASHION_MNIST} is missing in CI: scripts/setup.sh should install dataset-fashion-mnist")
    pytest.skip(f"{FASHION_MNIST} missing: run `make setup` (Debian package dataset-fashion-mnist)")


class Repo:
    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=TIMEOUT)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def stage_cmd(self, stage: str, **item: str) -> list[str]:
        """The words of a stage's dvc.yaml ``cmd``, ``${item...}`` filled in (a matrix/foreach stage)."""
        body = yaml.safe_load((self.root / "dvc.yaml").read_text())["stages"][stage]
        cmd = (body.get("do") or body)["cmd"]
        for key, value in item.items():
            cmd = cmd.replace("${item}" if key == "item" else "${item.%s}" % key, value)
        return cmd.split()

    def repro(self, *args: str) -> set[str]:
        """Run `dvc repro ARGS` and return the names of the stages that ran."""
        out = self.run("dvc", "repro", *args)
        return set(re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr))

    def set_params(self, **sections):
        """Update params.yaml section by section, nested mappings key by key (keys not given keep
        their values)."""
        from synthmix.config.presets import deep_merge

        path = self.root / "params.yaml"
        params = deep_merge(yaml.safe_load(path.read_text()), sections)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message: str):
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


def add_file_deps(root: Path, files: dict[str, str]) -> None:
    """List each file a param names (``{"generate.sd.model": "/models/tiny-sd"}``) as a dep of
    every stage whose ``params`` list reads that key (the key, or a section above it), as a user
    does for weights outside the repository: a stage refuses a file param that is not its dep."""
    path = root / "dvc.yaml"
    graph = yaml.safe_load(path.read_text())
    for key, file in files.items():
        prefixes = {".".join(key.split(".")[:i]) for i in range(1, key.count(".") + 2)}
        for body in graph["stages"].values():
            if prefixes & {str(k) for k in body.get("params") or []}:
                body.setdefault("deps", []).append(str(file))
    path.write_text(yaml.safe_dump(graph, sort_keys=False))


def make_repo(base: Path, overrides: dict | None = None, file_deps: dict[str, str] | None = None) -> Repo:
    """Copy the project into ``base/repo``, apply params overrides, list ``file_deps`` (see
    :func:`add_file_deps`), git init and commit."""
    root, home = base / "repo", base / "home"
    home.mkdir(parents=True)
    for rel in project_files():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    env = {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "synthmix tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "synthmix tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid",
        "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(home / "dvc-site-cache"),
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),  # the copy's library, which dvc.yaml tracks
    }
    repo = Repo(root, env)
    if overrides:
        repo.set_params(**overrides)
    if file_deps:
        add_file_deps(root, file_deps)
    repo.run("git", "init", "-q", "-b", "main")
    repo.commit("tiny experiment")
    return repo
