"""The fault catalogue: what the user sees, and what is kept, when a run is killed, a file is
damaged, the disk fills up, experiments run in parallel or a run is abandoned.

Stages run the way DVC runs them: the command line of dvc.yaml, in a workspace holding
params.yaml (the shipped values with tiny overrides) and the stage's inputs; killed runs are
subprocesses that get SIGKILL (no clean-up code runs). Everything is tiny and on the CPU, with
one thread, so byte comparisons are exact. The last two tests run `dvc` in temporary
repositories (tests/dvc_repo.py) and are end-to-end (marker e2e).
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import test_generator as tg  # the tiny shape images of the generator tests
from dvc_repo import TINY, make_repo, require_fashion_mnist
from shipped_params import shipped
from synthmix.core import atomic
from synthmix.data.manifest import read_manifest, write_manifest
from synthmix.runner import run_stage

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_DDPM = {"resolution": 16, "block_out_channels": [8, 16], "steps": 60, "batch_size": 8, "lr": 1e-3, "seed": 0}


# ------------------------------------------------------------------------------------------ workspace
class Workspace:
    """A folder laid out like the repository for a few stages: params.yaml, dvc.yaml, inputs."""

    def __init__(self, root: Path, **sections):
        self.root = root
        raw = copy.deepcopy(shipped())
        raw["device"] = "cpu"
        raw["mix"]["names"] = ["pct0", "pct50"]  # so a few synthetic images per class suffice
        raw["mix"]["per_class"] = 2
        for name, values in sections.items():
            raw[name] = {**raw[name], **values}
        root.mkdir(parents=True, exist_ok=True)
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")  # what error messages look stages up in
        tg._fake_real_set(root / "data/real", per_class=6)  # data/real/train.jsonl, classes.json
        for folder in ("prompts/wildcards", "models/lora", "models/textual_inversion"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def args(self, stage: str, **item: str) -> list[str]:
        """The stage's command line from dvc.yaml, without `python stages/<stage>.py`."""
        body = yaml.safe_load((self.root / "dvc.yaml").read_text())["stages"][stage]
        cmd = (body.get("do") or body)["cmd"]
        for key, value in item.items():
            cmd = cmd.replace("${item.%s}" % key, value)
        return cmd.split()[2:]

    def script(self, stage: str) -> list[str]:
        return [sys.executable, str(REPO / "stages" / f"{stage.split('@')[0]}.py"), *self.args(stage)]

    def popen(self, stage: str) -> subprocess.Popen:
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO / "src")}
        return subprocess.Popen(self.script(stage), cwd=self.root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, stage: str) -> subprocess.CompletedProcess:
        proc = self.popen(stage)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{stage} failed:\n{out[-3000:]}\n{err[-3000:]}"
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def in_process(self, func, stage: str, **item: str) -> None:
        """run_stage(func) with the stage's dvc.yaml arguments, in this folder."""
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            run_stage(func, self.args(stage, **item))
        finally:
            os.chdir(cwd)

    def json(self, rel: str) -> dict:
        return json.loads((self.root / rel).read_text())


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true (polled); fail if it ends first."""
    start = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}; make it longer:\n{err[-3000:]}")
        assert time.monotonic() - start < timeout, f"no {what} after {timeout} s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    """Leftovers of atomic writes: `.<name>.<random>.tmp` files and `.<out>.tmp-<pid>` folders."""
    return [p for p in root.rglob(".*") if p.name.endswith(".tmp") or ".tmp-" in p.name]


@pytest.fixture(scope="module")
def generator(tmp_path_factory) -> Path:
    """A tiny trained DDPM folder (the generate tests' model)."""
    root = tmp_path_factory.mktemp("generator")
    ws = Workspace(root / "ws", train_generator={**TINY_DDPM, "checkpoint_every": 0})
    ws.run("train_generator")
    return ws.root / "models/generator"


def generate_ws(root: Path, generator: Path, **generate) -> Workspace:
    ws = Workspace(root, generate={"batch_size": 4, "steps": 2, "per_class": 3, "write_threads": 0, **generate})
    shutil.copytree(generator, root / "models/generator")
    return ws


# ------------------------------------------------------------------------------------------ kills
def test_train_generator_killed_resumes_to_identical_weights(tmp_path):
    """SIGKILL after the first checkpoint; the re-run resumes and writes the same bytes as a run
    that was never interrupted; the scratch folder (and a superseded one) is gone after."""
    over = {**TINY_DDPM, "steps": 300, "checkpoint_every": 10}
    killed = Workspace(tmp_path / "killed", train_generator=over)
    partial = killed.root / "models/.partial"
    proc = killed.popen("train_generator")
    kill_when(proc, lambda: any(partial.glob("train_generator-*/checkpoints/step-*/meta.json")), "a checkpoint")
    (ckpt,) = partial.glob("train_generator-*/checkpoints/step-*")
    assert not (killed.root / "models/generator").exists()
    stale = partial / "train_generator-000000000000"  # a run with other params that never finished
    lora = partial / "train_lora-000000000000"  # another stage's: not train_generator's to remove
    for folder in (stale, lora):
        (folder / "checkpoints").mkdir(parents=True)
    done = killed.run("train_generator")
    resumed_at = killed.json("metrics/timings/generator.json")["resumed_at"]
    assert resumed_at >= int(ckpt.name.split("-")[1]) > 0, done.stdout
    assert f"resumed at step {resumed_at}" in done.stdout

    clean = Workspace(tmp_path / "clean", train_generator=over)
    clean.run("train_generator")
    assert clean.json("metrics/timings/generator.json")["resumed_at"] == 0
    assert tree_bytes(killed.root / "models/generator") == tree_bytes(clean.root / "models/generator")
    # the declared metrics (hashed into dvc.lock) are the same; only the timings file differs
    assert (killed.root / "metrics/generator.json").read_bytes() == (clean.root / "metrics/generator.json").read_bytes()
    assert sorted(p.name for p in partial.iterdir()) == [lora.name]
    assert not temp_files(killed.root / "models")


def test_generate_killed_resumes_to_identical_images(tmp_path, generator):
    over = {"per_class": 40, "batch_size": 2, "steps": 4}
    killed = generate_ws(tmp_path / "killed", generator, **over)
    scratch = killed.root / "data/.partial"
    proc = killed.popen("generate")
    kill_when(proc, lambda: len(list(scratch.glob("generate-*/images/*/*.png"))) >= 6, "6 images")
    assert not (killed.root / "data/synthetic").exists()
    done = killed.run("generate")
    run = killed.json("metrics/timings/generate.json")
    assert run["reused"] >= 6 and run["reused"] + run["generated"] == 120, run
    assert f"{run['reused']} reused" in done.stdout
    assert not scratch.exists()  # moved into place

    clean = generate_ws(tmp_path / "clean", generator, **over)
    clean.run("generate")
    assert clean.json("metrics/timings/generate.json")["reused"] == 0
    assert tree_bytes(killed.root / "data/synthetic") == tree_bytes(clean.root / "data/synthetic")
    assert (killed.root / "metrics/generate.json").read_bytes() == (clean.root / "metrics/generate.json").read_bytes()


def test_train_rerun_after_a_kill_is_byte_identical(tmp_path):
    """The classifier stage has no checkpoints (a run takes about a minute at the default size):
    after a kill, DVC runs it again from the start, which gives the same bytes."""
    def workspace(name: str) -> Workspace:
        ws = Workspace(tmp_path / name, train={"epochs": 12, "batch_size": 8, "input_size": 16})
        records = read_manifest(ws.root / "data/real/train.jsonl")
        write_manifest(ws.root / "data/mixes/pct0.jsonl", records)
        write_manifest(ws.root / "data/real/val.jsonl", records[::3])
        return ws

    args = {"mix": "pct0", "seed": "0"}
    killed = workspace("killed")
    cmd = [sys.executable, str(REPO / "stages/train.py"), *killed.args("train", **args)]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO / "src")}
    plots = killed.root / "metrics/train/pct0-seed0/plots/metrics/train_loss.tsv"
    proc = subprocess.Popen(cmd, cwd=killed.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_when(proc, lambda: plots.is_file(), "the first epoch")
    assert not (killed.root / "models/cls/pct0-seed0").exists()  # the checkpoint folder is written at the end
    results = {}
    for ws in (killed, workspace("clean")):
        subprocess.run(cmd, cwd=ws.root, env=env, check=True, capture_output=True, timeout=600)
        results[ws.root.name] = {**tree_bytes(ws.root / "models/cls"), **tree_bytes(ws.root / "metrics/train")}
    assert results["killed"] == results["clean"]


# ------------------------------------------------------------------------------------------ bad files
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_png_between_stages_names_the_file_and_the_repair(tmp_path, generator, damage, capsys):
    from synthmix.classify.train import train_stage
    from synthmix.generate import generate_stage

    ws = generate_ws(tmp_path / "ws", generator)
    ws.in_process(generate_stage, "generate")
    synthetic = read_manifest(ws.root / "data/synthetic/manifest.jsonl")
    real = read_manifest(ws.root / "data/real/train.jsonl")
    write_manifest(ws.root / "data/mixes/pct50.jsonl", real[::2] + synthetic)
    write_manifest(ws.root / "data/real/val.jsonl", real[1::2])
    bad = Path(synthetic[4]["path"])
    bad.write_bytes(bad.read_bytes()[:30] if damage == "truncated" else b"")

    with pytest.raises(SystemExit) as exit_:
        ws.in_process(train_stage, "train", mix="pct50", seed="0")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    rel = bad.relative_to(ws.root).as_posix()
    assert f"cannot read image {bad}" in err and rel.startswith("data/synthetic/"), err
    assert "`dvc checkout --force data/synthetic`" in err and "`dvc repro -f generate`" in err, err
    assert not (ws.root / "models/cls/pct50-seed0").exists() and not temp_files(ws.root)


# ------------------------------------------------------------------------------------------ full disk
def test_a_full_disk_fails_cleanly_keeps_the_old_output_and_the_rerun_continues(tmp_path, generator, monkeypatch,
                                                                                 capsys):
    from synthmix.generate import generate_stage

    ws = generate_ws(tmp_path / "ws", generator)
    ws.in_process(generate_stage, "generate")  # a complete earlier set (another seed below)
    old = tree_bytes(ws.root / "data/synthetic")
    old_metrics = (ws.root / "metrics/generate.json").read_bytes()
    raw = yaml.safe_load((ws.root / "params.yaml").read_text())
    raw["generate"]["seed"] += 1
    (ws.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    real_fsync, calls = os.fsync, []

    def fsync_until_full(fd):  # the 5th file written hits a full disk
        calls.append(fd)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_until_full)
    with pytest.raises(SystemExit) as exit_:
        ws.in_process(generate_stage, "generate")
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "error: no space left on device while writing" in err and "Free disk space" in err, err
    assert "data/.partial/generate-" in err and "re-run `dvc repro`" in err
    assert not temp_files(ws.root), temp_files(ws.root)  # no half-written file anywhere
    assert tree_bytes(ws.root / "data/synthetic") == old  # the previous output, intact
    assert (ws.root / "metrics/generate.json").read_bytes() == old_metrics
    (scratch,) = (ws.root / "data/.partial").glob("generate-*")
    assert len(list(scratch.rglob("*.png"))) == 4

    ws.in_process(generate_stage, "generate")  # space again: the run continues
    run = ws.json("metrics/timings/generate.json")
    assert run["reused"] == 4 and run["generated"] == 5
    assert tree_bytes(ws.root / "data/synthetic") != old and not (ws.root / "data/.partial").exists()


# ------------------------------------------------------------------------------------------ abandoned scratch
def test_generate_removes_superseded_scratch_folders_of_its_own_only(tmp_path, generator):
    from synthmix.generate import generate_stage

    ws = generate_ws(tmp_path / "ws", generator)
    partial = ws.root / "data/.partial"
    stale = partial / "generate-000000000000" / "images" / "circle"
    stale.mkdir(parents=True)
    (stale / "00000.png").write_bytes(b"an image of a superseded run")
    other = partial / "seg_generate-000000000000"  # not generate's
    other.mkdir()
    ws.in_process(generate_stage, "generate")
    assert sorted(p.name for p in partial.iterdir()) == [other.name]
    assert ws.json("metrics/timings/generate.json")["removed_scratch"] == ["generate-000000000000"]
    assert "removed_scratch" not in ws.json("metrics/generate.json")


# ------------------------------------------------------------------------------------------ end to end
# The classifier branch up to one training run: every stage whose metrics or plots once held
# seconds (train_generator, generate, train's DVCLive folder), in two clones in different directories.
LOCK = copy.deepcopy(TINY)
LOCK["mix"]["names"] = ["pct0"]
LOCK["train"]["seeds"] = [0]
LOCK["train_generator"]["checkpoint_every"] = 2
LOCK["prepare"]["train_per_class"] = max(16, LOCK["prepare"]["train_per_class"])  # what every params check allows
TARGET = "train@pct0-0"


def lock_outs(root: Path) -> dict:
    """{stage: [(path, md5, size) of every out]} of a dvc.lock."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {name: sorted((o["path"], o.get("md5"), o.get("size")) for o in body.get("outs", [])) for name, body in lock.items()}


def exp_rev(repo, name: str) -> str:
    """The commit of the experiment called ``name`` (its ref is refs/exps/<..>/<name>)."""
    refs = repo.run("git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").stdout.split("\n")
    (rev,) = [line.split()[0] for line in refs if line.endswith("/" + name)]
    return rev


@pytest.fixture(scope="module")
def two_clones(tmp_path_factory):
    """The same commit reproduced to TARGET in two directories at once (timings differ)."""
    require_fashion_mnist()
    repos = [make_repo(tmp_path_factory.mktemp(name) / "deeper" / name, LOCK) for name in ("first", "second")]
    errors = []

    def repro(repo):
        try:
            repo.repro(TARGET)
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=repro, args=(r,)) for r in repos]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"two dvc repro {TARGET}: {time.perf_counter() - start:.0f} s")
    if errors:
        raise errors[0]
    for repo in repos:
        repo.commit("first run")
    return repos


@pytest.mark.e2e
def test_two_clones_record_identical_output_hashes(two_clones):
    a, b = two_clones
    assert a.root != b.root
    outs_a, outs_b = lock_outs(a.root), lock_outs(b.root)
    assert {"train_generator", "generate", TARGET} <= set(outs_a)
    diff = {s: (outs_a.get(s), outs_b.get(s)) for s in set(outs_a) | set(outs_b) if outs_a.get(s) != outs_b.get(s)}
    assert not diff, f"dvc.lock output hashes differ between the clones: {json.dumps(diff, indent=1)}"
    # the whole lock file matches too; independent stages may be listed in another order (DVC writes
    # each stage's entry as it finishes, and the order of independent stages is not fixed)
    locks = [yaml.safe_load((r.root / "dvc.lock").read_text()) for r in (a, b)]
    assert locks[0] == locks[1]
    # the times were recorded, outside every hash
    run_a, run_b = (json.loads((r.root / "metrics/timings/train/pct0-seed0.json").read_text()) for r in (a, b))
    assert run_a["train_seconds"] > 0 and run_b["train_seconds"] > 0
    assert "metrics/timings" not in (a.root / "dvc.lock").read_text()
    assert not list((a.root / "models").glob(".partial"))  # train_generator's checkpoints were removed


@pytest.mark.e2e
def test_two_queued_experiments_match_sequential_runs(two_clones):
    """`dvc exp run --queue` twice and `dvc queue start -j 2`: both finish with the outputs of the
    same experiments run one after the other (in the other clone)."""
    queued, sequential = two_clones
    # each fully set: a workspace experiment leaves its params in params.yaml for the next one
    lr, batch = shipped()["train"]["lr"], LOCK["train"]["batch_size"]
    settings = {"lr3": ["-S", "train.lr=0.003", "-S", f"train.batch_size={batch}"],
                "b8": ["-S", f"train.lr={lr}", "-S", "train.batch_size=8"]}
    for name, setting in settings.items():
        queued.run("dvc", "exp", "run", "--queue", TARGET, *setting, "-n", f"q-{name}")
    start = time.perf_counter()
    queued.run("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 1500
    while True:
        status = queued.run("dvc", "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    queued.run("dvc", "queue", "stop", check=False)
    print(f"two queued experiments: {time.perf_counter() - start:.0f} s")
    assert status.count("Success") == 2, status + queued.run("dvc", "queue", "logs", "q-lr3", check=False).stdout

    for name, setting in settings.items():
        sequential.run("dvc", "exp", "run", TARGET, *setting, "-n", f"s-{name}")
    for name in settings:
        q, s = exp_rev(queued, f"q-{name}"), exp_rev(sequential, f"s-{name}")
        lock_q, lock_s = (yaml.safe_load(r.run("git", "show", f"{rev}:dvc.lock").stdout)["stages"]
                          for r, rev in ((queued, q), (sequential, s)))
        assert lock_q[TARGET]["outs"] == lock_s[TARGET]["outs"], name
        assert lock_q[TARGET]["params"] == lock_s[TARGET]["params"], name
        path = "metrics/train/pct0-seed0/metrics.json"
        assert queued.run("git", "show", f"{q}:{path}").stdout == sequential.run("git", "show", f"{s}:{path}").stdout
    shown = json.loads(queued.run("dvc", "exp", "show", "--json").stdout)
    assert all(f"q-{n}" in json.dumps(shown) for n in settings)
