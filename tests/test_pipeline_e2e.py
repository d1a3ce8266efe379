"""The whole DVC pipeline in a temporary git repository, on tiny parameter overrides.

What a user relies on: `dvc repro` builds everything from the shipped dvc.yaml; a second
`dvc repro` runs nothing; changing `train.lr` re-runs only training, evaluation and the
summary; `dvc exp run -S` / `dvc exp show --json` compare runs; `dvc push` / `dvc pull`
round-trip through a remote. Git and DVC configuration are isolated from the user's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
TIMEOUT = 900  # seconds for any one command

TINY = {
    "prepare": {"classes": ["t_shirt_top", "trouser", "sneaker"], "train_per_class": 12,
                "val_per_class": 6, "test_per_class": 20},
    "train_generator": {"resolution": 16, "block_out_channels": [8, 16], "steps": 4, "batch_size": 8},
    "generate": {"per_class": 12, "steps": 2, "batch_size": 16},
    "mix": {"names": ["pct0", "pct50", "pct100", "aug50"]},
    "train": {"seeds": [0, 1], "epochs": 1, "batch_size": 16},
}
MIXES, SEEDS = TINY["mix"]["names"], TINY["train"]["seeds"]


def project_files() -> list[str]:
    """Files a clone would have: tracked plus new, not ignored; no outputs of an earlier run."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.split("\n")
    skip = ("data/", "models/", "metrics/", "dvc.lock")
    return [f for f in out if f and not f.startswith(skip) and (REPO / f).is_file()]


class Repo:
    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=TIMEOUT)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def repro(self, *args: str) -> set[str]:
        out = self.run("dvc", "repro", *args)
        return set(re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr))

    def set_params(self, **sections):
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for section, values in sections.items():
            params[section].update(values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message: str):
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    if not FASHION_MNIST.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION_MNIST} is missing in CI: scripts/setup.sh should install dataset-fashion-mnist")
        pytest.skip(f"{FASHION_MNIST} missing: run `make setup` (Debian package dataset-fashion-mnist)")
    base = tmp_path_factory.mktemp("e2e")
    root, home = base / "repo", base / "home"
    home.mkdir()
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
    r = Repo(root, env)
    r.set_params(**TINY)
    r.run("git", "init", "-q", "-b", "main")
    r.commit("tiny experiment")
    return r


def test_repro_builds_every_stage(repo):
    ran = repo.repro()
    expected = {"prepare", "train_generator", "generate", "summarize"}
    expected |= {f"mix@{m}" for m in MIXES}
    expected |= {f"{s}@{m}-{seed}" for s in ("train", "evaluate") for m in MIXES for seed in SEEDS}
    assert ran == expected

    summary = json.loads((repo.root / "metrics/summary.json").read_text())
    assert set(summary["accuracy"]) == set(MIXES)
    for run in (f"{m}-seed{s}" for m in MIXES for s in SEEDS):
        metrics = json.loads((repo.root / f"metrics/cls/{run}.json").read_text())
        assert metrics["n_test"] == 60 and 0 <= metrics["accuracy"] <= 1
    mix = [json.loads(line) for line in (repo.root / "data/mixes/pct50.jsonl").read_text().splitlines()]
    assert sum(r["source"] == "synthetic" for r in mix) == 3 * 6  # 50 % of 12 per class
    table = (repo.root / "metrics/summary.md").read_text()
    for row in ("| pct0 | 0:100 |", "| pct50 | 50:50 |", "| pct100 | 100:0 |", "| aug50 | real + 50 % |"):
        assert row in table, table
    assert (repo.root / "metrics/accuracy_vs_fake.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    repo.commit("first run")


def test_second_repro_runs_nothing(repo):
    start = time.perf_counter()
    assert repo.repro() == set()
    print(f"no-change dvc repro: {time.perf_counter() - start:.1f} s")
    assert "up to date" in repo.run("dvc", "status").stdout.lower()


def test_lr_change_reruns_only_training_and_after(repo):
    repo.set_params(train={"lr": 3e-3})
    ran = repo.repro()
    trains = {f"train@{m}-{s}" for m in MIXES for s in SEEDS}
    assert trains <= ran
    assert ran <= trains | {f"evaluate@{m}-{s}" for m in MIXES for s in SEEDS} | {"summarize"}
    repo.commit("lr 3e-3")


def test_exp_run_and_show(repo):
    repo.run("dvc", "exp", "run", "-S", "train.epochs=2", "-n", "two-epochs")
    shown = json.loads(repo.run("dvc", "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert "two-epochs" in text
    # Every mix's accuracy appears as a metric of the experiment.
    for mix in MIXES:
        assert f'"{mix}"' in text
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    assert exps, "dvc exp show lists no experiment"


def test_push_pull_round_trip(repo, tmp_path):
    remote = tmp_path / "remote"
    repo.run("dvc", "remote", "add", "--local", "-d", "store", str(remote))
    repo.run("dvc", "push")
    manifest = repo.root / "data/synthetic/manifest.jsonl"
    before = manifest.read_bytes()
    shutil.rmtree(repo.root / "data")
    shutil.rmtree(repo.root / ".dvc" / "cache")
    repo.run("dvc", "pull")
    assert manifest.read_bytes() == before
    assert "up to date" in repo.run("dvc", "status").stdout.lower()


def test_invalid_params_stop_the_stage_with_a_clear_message(repo):
    repo.set_params(train={"lr": -1})
    proc = repo.run("python", "stages/train.py", "pct0", "0", check=False)
    assert proc.returncode == 2
    assert "train.lr = -1" in proc.stderr and "greater than 0" in proc.stderr
    assert "Traceback" not in proc.stderr
