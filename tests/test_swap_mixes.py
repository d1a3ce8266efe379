"""Swap mixes (lrrN / grrN, DA-Fusion's training-time replacement): names, manifests, draws."""

from collections import Counter

import numpy as np
import pytest

from synthmix.config.mixnames import ROLE_CANDIDATE, ROLE_REAL, MixNameError, MixSpec
from synthmix.core.errors import DataError
from synthmix.mixes import SwapPlan, build_mix, split_swap_mix

CLASSES = ["bear", "cat", "dog"]
PER_CLASS = 20
M = 4  # variants per real image


def real_records(per_class=PER_CLASS):
    return [{"path": f"/real/{c}/{i:04d}.png", "label": c, "source": "real", "sha256": f"real-{c}-{i}"}
            for c in CLASSES for i in range(per_class)]


def variants(reals, m=M, skip=()):
    """``m`` image-to-image variants of every real record (except those in ``skip``), as an
    img2img generator will write them: source_path and source_sha256 of the real image."""
    return [{"path": f"/syn/{r['label']}/{r['sha256']}-{k}.png", "label": r["label"], "source": "synthetic",
             "sha256": f"syn-{r['sha256']}-{k}", "source_path": r["path"], "source_sha256": r["sha256"]}
            for r in reals if r["sha256"] not in skip for k in range(m)]


def text2img(per_class=30):
    return [{"path": f"/t2i/{c}/{i:04d}.png", "label": c, "source": "synthetic", "sha256": f"t2i-{c}-{i}",
             "generator": "ddpm"} for c in CLASSES for i in range(per_class)]


REAL = real_records()
VARIANTS = variants(REAL)


@pytest.mark.parametrize("name,kind,value", [("lrr50", "lrr", 50), ("grr30", "grr", 30), ("lrr0", "lrr", 0),
                                             ("grr100", "grr", 100)])
def test_mixspec_parses_swap_names(name, kind, value):
    spec = MixSpec.parse(name)
    assert (spec.kind, spec.value, spec.is_swap, spec.name) == (kind, value, True, name)
    assert spec.swap_probability == pytest.approx(value / 100)
    assert spec.counts(225, 225) == (225, 0)  # pct0's real images; candidates are not samples
    assert spec.fake_share == pytest.approx(value / 100)
    assert not MixSpec.parse("pct50").is_swap and MixSpec.parse("aug100").swap_probability == 0.0


@pytest.mark.parametrize("name", ["lrr101", "grr150", "lrr", "lrr-5", "lrr5.5", "rrr50"])
def test_mixspec_rejects_bad_swap_names(name):
    with pytest.raises(MixNameError):
        MixSpec.parse(name)


def test_ratio_labels_of_swap_mixes():
    assert MixSpec.parse("lrr50").ratio_label == "swap 50 % (own variants)"
    assert MixSpec.parse("grr30").ratio_label == "swap 30 % (class)"


def test_lrr_manifest_lists_pct0_reals_and_their_variants():
    mix = build_mix("lrr50", REAL, VARIANTS + text2img(), CLASSES, per_class=15, seed=0)
    reals = [r for r in mix if r["role"] == ROLE_REAL]
    cands = [r for r in mix if r["role"] == ROLE_CANDIDATE]
    pct0 = build_mix("pct0", REAL, VARIANTS, CLASSES, per_class=15, seed=0)
    assert [{k: v for k, v in r.items() if k != "role"} for r in reals] == pct0  # the same real images
    assert Counter(r["label"] for r in reals) == {c: 15 for c in CLASSES}
    chosen = {r["sha256"] for r in reals}
    assert {c["source_sha256"] for c in cands} == chosen  # only variants of the chosen images
    assert len(cands) == 15 * M * len(CLASSES) and all(c["source"] == "synthetic" for c in cands)


def test_grr_manifest_lists_every_synthetic_image_of_the_class():
    fakes = text2img()
    mix = build_mix("grr30", REAL, fakes, CLASSES, per_class=PER_CLASS, seed=0)
    cands = [r for r in mix if r["role"] == ROLE_CANDIDATE]
    assert sorted(c["path"] for c in cands) == sorted(f["path"] for f in fakes)


def test_swap_with_probability_zero_is_pct0():
    for name in ("lrr0", "grr0"):
        # no variants needed: nothing is ever swapped
        assert build_mix(name, REAL, text2img(), CLASSES, 15, seed=3) == build_mix("pct0", REAL, [], CLASSES, 15, seed=3)


def test_lrr_without_image_to_image_variants_is_a_clear_error():
    with pytest.raises(DataError, match=r"lrr mixes need image-to-image variants: .*source_sha256.*ddpm.*grr50"):
        build_mix("lrr50", REAL, text2img(), CLASSES, PER_CLASS, seed=0)
    with pytest.raises(DataError, match="no variant of any of the 20 real images of class 'dog'"):
        build_mix("lrr50", REAL, [v for v in VARIANTS if v["label"] != "dog"], CLASSES, PER_CLASS, seed=0)


def test_grr_without_synthetic_images_of_a_class_is_an_error():
    with pytest.raises(DataError, match="class 'cat'"):
        build_mix("grr50", REAL, [f for f in text2img() if f["label"] != "cat"], CLASSES, PER_CLASS, seed=0)


def _plan(name, fakes, reals=REAL):
    mix = build_mix(name, reals, fakes, CLASSES, PER_CLASS, seed=0)
    samples, cands, plan = split_swap_mix(name, mix)
    return samples, cands, plan


@pytest.mark.parametrize("alpha", [30, 50, 70])
def test_swap_rate_matches_alpha(alpha):
    samples, cands, plan = _plan(f"lrr{alpha}", VARIANTS)
    draws = np.stack([plan.draw(seed=0, epoch=e) for e in range(1, 201)])
    n = draws.size  # 60 samples x 200 epochs = 12000 Bernoulli draws
    p = alpha / 100
    rate = (draws >= 0).mean()
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n)  # binomial, 4 sigma
    # every candidate is drawn about equally often (uniform among a sample's variants)
    counts = np.bincount(draws[draws >= 0], minlength=len(cands))
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()


def test_lrr_only_returns_variants_of_the_same_source_image():
    samples, cands, plan = _plan("lrr70", VARIANTS)
    for epoch in range(1, 30):
        drawn = plan.draw(seed=1, epoch=epoch)
        for i in np.flatnonzero(drawn >= 0):
            assert cands[drawn[i]]["source_sha256"] == samples[i]["sha256"]
            assert cands[drawn[i]]["label"] == samples[i]["label"]


def test_grr_stays_within_the_class():
    samples, cands, plan = _plan("grr70", text2img())
    seen = set()
    for epoch in range(1, 30):
        drawn = plan.draw(seed=1, epoch=epoch)
        for i in np.flatnonzero(drawn >= 0):
            assert cands[drawn[i]]["label"] == samples[i]["label"]
            seen.add(int(drawn[i]))
    assert len(seen) > len(cands) // 2  # any image of the class, not a fixed few


def test_same_seed_same_swaps_other_seed_or_epoch_differs():
    _, _, plan = _plan("lrr50", VARIANTS)
    a = [plan.draw(seed=0, epoch=e) for e in (1, 2)]
    b = [plan.draw(seed=0, epoch=e) for e in (1, 2)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], plan.draw(seed=1, epoch=1))


def test_real_images_without_variants_are_never_swapped():
    skip = {r["sha256"] for r in REAL[::2]}
    samples, cands, plan = _plan("lrr100", variants(REAL, skip=skip))
    assert plan.coverage == pytest.approx(0.5)
    drawn = plan.draw(seed=0, epoch=1)
    assert all((drawn[i] < 0) == (s["sha256"] in skip) for i, s in enumerate(samples))


def test_candidates_outside_a_swap_mix_are_an_error():
    mix = build_mix("grr50", REAL, text2img(), CLASSES, PER_CLASS, seed=0)
    with pytest.raises(DataError, match="swap candidates.*pct50 is not a swap mix"):
        split_swap_mix("pct50", mix)
    plain = build_mix("pct50", REAL, text2img(), CLASSES, PER_CLASS, seed=0)
    assert split_swap_mix("pct50", plain) == (plain, [], None)
    assert isinstance(split_swap_mix("grr50", mix)[2], SwapPlan)


def test_params_accept_swap_mixes_and_check_their_real_images():
    import copy

    from shipped_params import shipped
    from synthmix.config.loading import validate_params
    from synthmix.core.errors import ParamsError

    raw = copy.deepcopy(shipped())
    raw["mix"]["names"] = ["pct0", "lrr50", "grr30", "lrr0"]
    assert validate_params(raw).mix.names == ["pct0", "lrr50", "grr30", "lrr0"]
    raw["mix"]["names"] = ["pct0", "lrr150"]
    with pytest.raises(ParamsError, match="lrr150.*a swap probability is at most 100"):
        validate_params(raw)
    raw["mix"]["names"], raw["summarize"]["baseline"] = ["grr50"], "grr50"  # a swap mix alone
    raw["mix"]["per_class"] = raw["prepare"]["train_per_class"] + 1
    with pytest.raises(ParamsError, match="mix grr50 .* needs .* real images per class"):
        validate_params(raw)
