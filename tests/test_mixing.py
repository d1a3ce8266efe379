"""Mix arithmetic: exact per-class counts, deterministic and nested choices, clear errors."""

from collections import Counter

import pytest

from synthmix.config.mixnames import mix_counts
from synthmix.core.errors import DataError
from synthmix.mixes import build_mix

CLASSES = ["bear", "cat", "dog"]


def records(source, per_class, classes=CLASSES):
    return [
        {"path": f"/{source}/{c}/{i:04d}.png", "label": c, "source": source, "sha256": f"{source}{c}{i}"}
        for c in classes
        for i in range(per_class)
    ]


REAL, FAKE = records("real", 225), records("synthetic", 225)


@pytest.mark.parametrize(
    "name,real,fake",
    [("pct0", 225, 0), ("pct50", 112, 113), ("pct60", 90, 135), ("pct70", 67, 158),
     ("pct80", 45, 180), ("pct100", 0, 225), ("aug100", 225, 225), ("aug20", 225, 45)],
)
def test_exact_per_class_counts(name, real, fake):
    assert mix_counts(name, 225, 225) == (real, fake)
    mix = build_mix(name, REAL, FAKE, CLASSES, per_class=225, seed=0)
    counts = Counter((r["label"], r["source"]) for r in mix)
    for c in CLASSES:
        assert counts[(c, "real")] == real
        assert counts[(c, "synthetic")] == fake
    assert len({r["path"] for r in mix}) == len(mix)  # no image twice


def test_every_percentage_sums_to_the_total():
    for pct in range(101):
        real, fake = mix_counts(f"pct{pct}", 225, 225)
        assert real + fake == 225 and fake == (225 * pct + 50) // 100


def test_mixes_are_deterministic_and_nested():
    a = build_mix("pct60", REAL, FAKE, CLASSES, 225, seed=0)
    assert a == build_mix("pct60", list(reversed(REAL)), FAKE, CLASSES, 225, seed=0)
    b = build_mix("pct80", REAL, FAKE, CLASSES, 225, seed=0)
    def real(m):
        return {r["path"] for r in m if r["source"] == "real"}
    def fake(m):
        return {r["path"] for r in m if r["source"] == "synthetic"}
    assert real(b) < real(a) and fake(a) < fake(b)
    other_seed = build_mix("pct60", REAL, FAKE, CLASSES, 225, seed=1)
    assert real(other_seed) != real(a)


def test_smaller_total_draws_a_subset():
    small = build_mix("pct0", REAL, FAKE, CLASSES, per_class=50, seed=0)
    assert Counter(r["label"] for r in small) == {c: 50 for c in CLASSES}


def test_not_enough_synthetic_images_is_a_clear_error():
    with pytest.raises(DataError, match=r"pct100 needs 225 synthetic images of class 'bear'.*has 100.*generate.per_class"):
        build_mix("pct100", REAL, records("synthetic", 100), CLASSES, 225, seed=0)


def test_not_enough_real_images_is_a_clear_error():
    with pytest.raises(DataError, match=r"needs 300 real images of class 'bear'.*has 225"):
        build_mix("pct0", REAL, FAKE, CLASSES, 300, seed=0)


def test_missing_class_in_synthetic_set():
    fake = records("synthetic", 225, ["bear", "cat"])
    with pytest.raises(DataError, match="'dog'"):
        build_mix("pct50", REAL, fake, CLASSES, 225, seed=0)
    # pct0 uses no synthetic image, so it does not care.
    assert len(build_mix("pct0", REAL, fake, CLASSES, 225, seed=0)) == 675
