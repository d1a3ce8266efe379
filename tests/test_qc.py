"""Quality control: planted wrong-class images and near-duplicates are dropped, the rest kept."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dvc_repo import FASHION_MNIST
from shipped_params import section
from synthmix.classify.qc import (
    caption,
    hamming,
    markdown_report,
    near_duplicates,
    phash,
    run_qc,
)
from synthmix.data.contact import contact_sheet
from synthmix.data.manifest import file_sha256
from synthmix.data.sources import load_fashion_mnist_debian

CLASSES = ["t_shirt_top", "trouser", "sneaker"]
IDS = {"t_shirt_top": 0, "trouser": 1, "sneaker": 7}


def _write(img: Image.Image, path, label, source="real"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return {"path": str(path), "label": label, "source": source, "sha256": file_sha256(path)}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    if not FASHION_MNIST.exists():
        pytest.skip("Fashion-MNIST missing: run `make setup`")
    root = tmp_path_factory.mktemp("qc")
    src = load_fashion_mnist_debian(FASHION_MNIST.parent)
    labels = src.labels("train")
    real, val, syn = [], [], []
    for cls, k in IDS.items():
        idx = np.flatnonzero(labels == k)
        for n, i in enumerate(idx[:150]):
            img = src.load("train", int(i))
            if n < 100:
                real.append(_write(img, root / "real" / cls / f"{n}.png", cls))
            elif n < 120:
                val.append(_write(img, root / "val" / cls / f"{n}.png", cls))
            else:
                syn.append(_write(img, root / "syn" / cls / f"{n}.png", cls, "synthetic"))
    planted = {}
    # three trousers labelled t-shirt: wrong class
    for n, i in enumerate(np.flatnonzero(labels == 1)[200:203]):
        rec = _write(src.load("train", int(i)), root / "syn" / "t_shirt_top" / f"w{n}.png", "t_shirt_top", "synthetic")
        syn.append(rec)
        planted[rec["path"]] = "wrong_class"
    # a near-copy (2 grey levels brighter) of a synthetic sneaker, and a copy of a real trouser
    base = next(r for r in syn if r["label"] == "sneaker")
    bright = Image.fromarray(np.clip(np.asarray(Image.open(base["path"]), dtype=int) + 2, 0, 255).astype(np.uint8))
    rec = _write(bright, root / "syn" / "sneaker" / "zz_dup.png", "sneaker", "synthetic")
    syn.append(rec)
    planted[rec["path"]] = "duplicate"
    rec = _write(Image.open(real[105]["path"]), root / "syn" / "trouser" / "zz_copy.png", "trouser", "synthetic")
    syn.append(rec)
    planted[rec["path"]] = "copies_real"
    return root, real, val, syn, planted


def test_qc_drops_planted_wrong_class_and_duplicates_and_keeps_the_rest(sets):
    root, real, val, syn, planted = sets
    params = section("qc", enabled=True, epochs=8, input_size=16, confidence=0.99)
    kept, dropped, stats = run_qc(params, syn, real, val, CLASSES, root / "work", device="cpu")
    got = {d["path"]: d["qc_reason"]["reason"] for d in dropped}
    assert got == planted, [(d["path"], d["qc_reason"]) for d in dropped]
    assert len(kept) == len(syn) - len(planted) and not {r["path"] for r in kept} & set(planted)
    assert stats["dropped_by"] == {"wrong_class": 3, "duplicate": 1, "copies_real": 1}
    assert stats["classifier"]["best_val_accuracy"] > 0.9
    wrong = next(d for d in dropped if d["qc_reason"]["reason"] == "wrong_class")
    assert wrong["qc_reason"]["predicted"] == "trouser" and wrong["qc_reason"]["probability"] > 0.99
    assert next(d for d in dropped if d["qc_reason"]["reason"] == "copies_real")["qc_reason"]["of"] == real[105]["path"]
    report = markdown_report(stats, dropped, params, "dropped.png", root)
    assert "![dropped images](dropped.png)" in report and "| trouser | 31 | 30 | 1 |" in report
    sheet = contact_sheet([d["path"] for d in dropped], [caption(d) for d in dropped], thumb=80)
    assert sheet.size[0] == 5 * 82 + 2


def test_qc_reports_a_near_copy_of_a_test_image_without_dropping_it(sets, tmp_path):
    root, real, val, syn, planted = sets
    src = load_fashion_mnist_debian(FASHION_MNIST.parent)
    labels = src.labels("test")
    test = [_write(src.load("test", int(i)), tmp_path / "test" / cls / f"{n}.png", cls)
            for cls, k in IDS.items() for n, i in enumerate(np.flatnonzero(labels == k)[:40])]  # fmt: skip
    # a "synthetic" trouser that is a real test trouser (test[45]), 2 grey levels brighter
    of = test[45]
    bright = Image.fromarray(np.clip(np.asarray(Image.open(of["path"]), dtype=int) + 2, 0, 255).astype(np.uint8))
    leak = _write(bright, tmp_path / "syn" / of["label"] / "leak.png", of["label"], "synthetic")
    # no classifier (wrong_class off, pHash dedup): fast; the planted duplicates are dropped as before
    params = section("qc", enabled=True, wrong_class=False)
    kept, dropped, stats = run_qc(params, syn + [leak], real, val, CLASSES, tmp_path / "work", device="cpu",
                                  real_test=test)  # fmt: skip
    near = stats["near_test"]
    assert near["n_checked"] == len(kept) and near["n_test"] == len(test) == 120
    assert near["n_near_test"] == 1 and near["matches"][0]["path"] == leak["path"]
    assert near["matches"][0]["of"] == of["path"] and near["matches"][0]["distance"] <= params.phash_max_distance
    assert leak["path"] in {r["path"] for r in kept}  # reported, never dropped
    assert leak["path"] not in {d["path"] for d in dropped}
    report = markdown_report(stats, dropped, params, None, tmp_path)
    assert "## Near-copies of real test images (reported, not dropped)" in report
    assert "| syn/trouser/leak.png | trouser | test/trouser/5.png | trouser |" in report
    # qc.against_test off: no check, no key
    _, _, off = run_qc(section("qc", enabled=True, wrong_class=False, against_test=False), syn, real, val, CLASSES,
                       tmp_path / "work2", device="cpu", real_test=test)  # fmt: skip
    assert "near_test" not in off


def test_qc_off_passes_everything_without_a_model(tmp_path):
    syn = [{"path": f"/s/{i}.png", "label": "a", "source": "synthetic", "sha256": "x"} for i in range(3)]
    kept, dropped, stats = run_qc(section("qc"), syn, [], [], ["a"], tmp_path)
    assert kept == syn and dropped == [] and stats["n_kept"] == 3
    assert not (tmp_path / "classifier").exists()
    assert "**off**" in markdown_report(stats, [], section("qc"), None, tmp_path)


def test_phash_is_stable_under_small_changes_and_tells_images_apart():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (28, 28), dtype=np.uint8)
    b = rng.integers(0, 255, (28, 28), dtype=np.uint8)
    ha, hb = phash(Image.fromarray(a)), phash(Image.fromarray(b))
    ha2 = phash(Image.fromarray(np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)))
    assert ha.shape == (32,) and ha.dtype == np.uint8
    d = hamming(ha[None], np.stack([ha2, hb]))[0]
    assert d[0] <= 12 < 64 < d[1]


def test_near_duplicates_keeps_the_first_of_a_group():
    f = np.array([[1, 0], [0.999, 0.04], [0, 1], [0.7, 0.7]])
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    assert near_duplicates(f, None, [0, 1, 2, 3], "features", 0.99) == {1: ("synthetic", 0, pytest.approx(0.9992, abs=1e-3))}
