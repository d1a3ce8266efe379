"""Two collaborators sharing one experiment through a DVC remote, on tiny parameter overrides.

Alice runs the pipeline up to `summarize`, commits dvc.lock and the git-tracked metrics,
pushes the commit to a bare git repository ("origin") and the outputs to a DVC remote. Bob
clones origin into another absolute path, writes Python bytecode into his `src/` (as any
import does), pulls, and must find nothing to recompute: `dvc status` is empty and
`dvc repro` runs nothing. Bob then changes `train.lr` in an experiment and pushes it; Alice
pulls it and sees it in `dvc exp show`, its models in her DVC cache.

Run against a local directory remote and an S3 remote (moto's server on 127.0.0.1).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dvc_repo import TIMEOUT, TINY, Repo, make_repo, require_fashion_mnist

pytestmark = pytest.mark.e2e

# The smallest run of prepare -> train_generator -> generate -> mix -> train -> evaluate ->
# summarize: one mix of real and synthetic images (its own baseline), one seed.
COLLAB = copy.deepcopy(TINY)
COLLAB["mix"]["names"] = ["pct50"]
COLLAB["summarize"] = {"baseline": "pct50"}
COLLAB["train"]["seeds"] = [0]
TARGET = "summarize"
RUNS = [f"{m}-{s}" for m in COLLAB["mix"]["names"] for s in COLLAB["train"]["seeds"]]
# At least what dvc repro summarize builds (generate reads prompts/wildcards, which holds
# hyponet's output; the graph may add more upstream stages).
CHAIN = {"prepare", "hyponet", "train_generator", "generate", "qc", TARGET}
CHAIN |= {f"mix@{m}" for m in COLLAB["mix"]["names"]}
CHAIN |= {f"{s}@{r}" for s in ("train", "evaluate") for r in RUNS}
NEW_LR = 0.003
BUCKET = "synthmix-shared"


class Timer:
    """Seconds per step, printed at the end (pytest -s or -rP shows them)."""

    def __init__(self):
        self.start, self.steps = time.perf_counter(), []

    def __call__(self, step: str):
        now = time.perf_counter()
        self.steps.append((step, now - self.start))
        self.start = now

    def show(self):
        print(", ".join(f"{step} {seconds:.0f} s" for step, seconds in self.steps))


@dataclass
class Remote:
    url: str
    config: dict = field(default_factory=dict)  # dvc remote modify KEY VALUE
    env: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    """Alice's repository after `dvc repro summarize`, committed and pushed to a bare origin."""
    require_fashion_mnist()
    base = tmp_path_factory.mktemp("alice")
    repo = make_repo(base, COLLAB)
    start = time.perf_counter()
    ran = repo.repro(TARGET)
    print(f"alice: dvc repro {TARGET} {time.perf_counter() - start:.0f} s")
    assert CHAIN <= ran
    repo.commit("first run")
    hub = base / "origin.git"
    repo.run("git", "init", "-q", "--bare", "-b", "main", str(hub))
    repo.run("git", "remote", "add", "origin", str(hub))
    repo.run("git", "push", "-q", "origin", "main")
    return repo, hub, ran


@pytest.fixture(params=["local", "s3"])
def remote(request, tmp_path):
    if request.param == "local":
        yield request.param, Remote(url=str(tmp_path / "dvc-remote"))
        return
    # The test extra installs these; a missing one is a broken environment, not a skip.
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.fail(f"{exc}: install the test extra (pip install -e '.[test]': moto[server], dvc-s3)")
    if importlib.util.find_spec("dvc_s3") is None:
        pytest.fail("dvc-s3 is missing: install the test extra (pip install -e '.[test]')")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield request.param, Remote(url=f"s3://{BUCKET}/dvc", config={"endpointurl": endpoint,
                                                                  "region": "us-east-1"}, env=env)
    finally:
        server.stop()


def use_remote(repo: Repo, remote: Remote):
    """Make REMOTE the default DVC remote of REPO (local config: not part of the commit)."""
    repo.env.update(remote.env)
    repo.run("dvc", "remote", "add", "--local", "-f", "-d", "shared", remote.url)
    for key, value in remote.config.items():
        repo.run("dvc", "remote", "modify", "--local", "shared", key, value)


def clone(hub: Path, alice: Repo, base: Path) -> Repo:
    """Bob's clone of origin, in another directory, with his own home and bytecode writing on."""
    root, home = base / "elsewhere" / "bob", base / "bob-home"
    home.mkdir(parents=True)
    old_home = alice.env["HOME"]
    env = {k: v.replace(old_home, str(home)) if k == "HOME" or k.startswith(("GIT_CONFIG", "DVC_")) else v
           for k, v in alice.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(root / "src")
    subprocess.run(["git", "clone", "-q", str(hub), str(root)], cwd=base, env=env, check=True,
                   capture_output=True, timeout=TIMEOUT)
    return Repo(root, env)


def workspace_files(root: Path) -> dict[str, int]:
    """mtime_ns of every file outside .git/.dvc and interpreter caches."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not {".git", ".dvc", "__pycache__"} & set(p.relative_to(root).parts)}


def in_cache(root: Path, md5: str) -> bool:
    """Whether ROOT's DVC cache holds the object MD5 (for a directory, every file in it)."""
    path = root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    if not path.is_file():
        return False
    return not md5.endswith(".dir") or all(in_cache(root, e["md5"]) for e in json.loads(path.read_text()))


def status(repo: Repo) -> dict:
    return json.loads(repo.run("dvc", "status", "--json", "--with-deps", TARGET).stdout)


def find_exp(shown, name: str) -> dict | None:
    """The `dvc exp show --json` record of the experiment called NAME."""
    if isinstance(shown, dict):
        if shown.get("name") == name and "data" in shown:
            return shown
        values = shown.values()
    elif isinstance(shown, list):
        values = shown
    else:
        return None
    for value in values:
        if (hit := find_exp(value, name)) is not None:
            return hit
    return None


def test_clone_pulls_and_recomputes_nothing_then_shares_an_experiment(alice, remote, tmp_path):
    kind, remote = remote
    a, hub, alice_ran = alice
    timer = Timer()
    use_remote(a, remote)
    a.run("dvc", "push")
    timer("alice push")

    b = clone(hub, a, tmp_path)
    assert b.root != a.root
    use_remote(b, remote)
    # Bytecode in Bob's tree, as importing the library (or running any stage) leaves it.
    b.run("python", "-c", "import synthmix.generators.ddpm, synthmix.classify.train")
    pyc = list((b.root / "src").rglob("__pycache__/*.pyc"))
    assert pyc, "no bytecode was written under Bob's src/"
    timer("bob clone")
    b.run("dvc", "pull", "--with-deps", TARGET)  # Alice ran only summarize's part of the graph
    timer("bob pull")

    changed = status(b)
    if changed:
        pytest.fail(f"a fresh clone that pulled finds changes ({kind} remote): {json.dumps(changed, indent=1)}")

    # .dvcignore keeps interpreter caches out of every hash: a directory dependency
    # (prompts/wildcards, of generate) and a cached directory output (data/real) with strays.
    for folder in (b.root / "prompts/wildcards", b.root / "data/real"):
        (folder / "__pycache__").mkdir(exist_ok=True)
        (folder / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"\x00stray")
        (folder / "stray.pyc").write_bytes(b"\x00stray")
    b.run("dvc", "check-ignore", "src/synthmix/__pycache__/x.pyc", "data/real/stray.pyc")
    assert status(b) == {}, "a __pycache__/ or *.pyc file changed a hash: check .dvcignore"
    for folder in (b.root / "prompts/wildcards", b.root / "data/real"):  # git would commit stray.pyc
        shutil.rmtree(folder / "__pycache__")
        (folder / "stray.pyc").unlink()
    timer("bob status x2")

    lock, files = (b.root / "dvc.lock").read_bytes(), workspace_files(b.root)
    out = b.run("dvc", "repro", TARGET)
    text = out.stdout + out.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", text))
    restored = set(re.findall(r"Restored stage '([^']+)'", text))
    assert not ran and not restored, f"Bob's repro recomputed {sorted(ran)} / restored {sorted(restored)}"
    assert set(re.findall(r"Stage '([^']+)' didn't change", text)) == alice_ran, text
    assert (b.root / "dvc.lock").read_bytes() == lock
    assert workspace_files(b.root) == files
    timer("bob repro (no-op)")

    # Bob's experiment: only training and what follows it re-runs.
    name = f"bob-lr-{kind}"
    out = b.run("dvc", "exp", "run", TARGET, "-S", f"train.lr={NEW_LR}", "-n", name)
    ran = set(re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr))
    trains = {f"train@{r}" for r in RUNS}
    assert trains <= ran <= trains | {f"evaluate@{r}" for r in RUNS} | {TARGET}, ran
    timer("bob exp run")
    b.run("dvc", "exp", "push", "origin", name)
    timer("bob exp push")

    a.run("dvc", "exp", "pull", "origin", name)
    timer("alice exp pull")
    shown = json.loads(a.run("dvc", "exp", "show", "--json").stdout)
    timer("alice exp show")
    exp = find_exp(shown, name)
    assert exp is not None, f"{name} is not in Alice's dvc exp show: {json.dumps(shown)[:3000]}"
    params = exp["data"]["params"]["params.yaml"]["data"]
    assert params["train"]["lr"] == NEW_LR
    assert "summary.json" in json.dumps(exp["data"]["metrics"])

    # Its outputs came through the remote into Alice's cache (the models Bob trained, say).
    lock = yaml.safe_load(a.run("git", "show", f"{exp['rev']}:dvc.lock").stdout)
    for run in RUNS:
        [model] = [o for o in lock["stages"][f"train@{run}"]["outs"] if o["path"].startswith("models/")]
        assert in_cache(a.root, model["md5"]), f"train@{run}: {model} is not in Alice's cache"
    timer.show()
