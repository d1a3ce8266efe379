"""The few-shot DA-Fusion protocol: subsets, per-method generation settings, swap draws, probe, summary."""

from __future__ import annotations

import pytest
import torch

from shipped_params import section
from synthmix.config.loading import load_params
from synthmix.core.errors import DataError
from synthmix.fewshot.probe import draw_epoch, swap_rows, swap_table, train_probe
from synthmix.fewshot.subsets import draw_subset
from synthmix.fewshot.variants import method_generate_params
from synthmix.reporting.fewshot import markdown_table, summarize_runs

CLASSES = ["a", "b", "c"]


def _records(per_class: int = 10) -> list[dict]:
    return [{"path": f"/r/{c}{i}.png", "label": c, "source": "real", "sha256": f"{c}{i:063d}"}
            for c in CLASSES for i in range(per_class)]


def test_subsets_are_seeded_per_trial_and_nested_across_shots():
    recs = _records()
    one, four = draw_subset(recs, CLASSES, 1, 0, 0), draw_subset(recs, CLASSES, 4, 0, 0)
    assert [r["label"] for r in four] == [c for c in CLASSES for _ in range(4)]
    assert {r["sha256"] for r in one} <= {r["sha256"] for r in four}
    assert draw_subset(list(reversed(recs)), CLASSES, 4, 0, 0) == four  # not the file order
    assert draw_subset(recs, CLASSES, 4, 0, 1) != four  # another trial, another subset
    with pytest.raises(DataError, match="11 examples of class 'a'"):
        draw_subset(recs, CLASSES, 11, 0, 0)


def test_real_guidance_uses_one_strength_and_the_class_name_dafusion_the_study_settings():
    params = load_params("params.yaml")
    rg = method_generate_params(params, "real_guidance")
    assert rg.mode == "img2img" and rg.img2img.strengths == [params.fewshot.real_guidance_strength]
    assert rg.img2img.forbid_class_names is False and rg.sd.textual_inversion is False
    da = method_generate_params(params, "dafusion")
    assert da.img2img == params.generate.img2img and da.img2img.strengths == [0.25, 0.5, 0.75, 1.0]
    assert da.img2img.per_image == 10 and params.fewshot.alpha == 0.5  # M and alpha of the study


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.7])
def test_swap_rate_matches_alpha_and_swaps_stay_within_the_image(alpha):
    table = [[0, 1], [2, 3, 4], [5]]  # image i's own variant rows
    owner = {row: i for i, rows in enumerate(table) for row in rows}
    hits = total = 0
    for epoch in range(1, 21):
        idx, flip, use_swap, pick = draw_epoch(1000, alpha, 0, epoch, len(table))
        rows = swap_rows(table, idx, use_swap, pick)
        swapped = rows >= 0
        assert all(owner[int(r)] == int(i) for r, i in zip(rows[swapped], idx[swapped]))
        hits, total = hits + int(swapped.sum()), total + len(rows)
        assert 0.4 < flip.float().mean() < 0.6
    assert abs(hits / total - alpha) < 0.02  # 20,000 draws: s.d. < 0.004
    # every variant of an image is drawn
    idx, _, use_swap, pick = draw_epoch(5000, 1.0, 0, 1, len(table))
    assert set(swap_rows(table, idx, use_swap, pick).tolist()) == {0, 1, 2, 3, 4, 5}


def test_an_image_without_variants_is_an_error():
    with pytest.raises(DataError, match="1 of 2 real images have no variant"):
        swap_table(2, ["x", "y"], [{"source_sha256": "x"}])


def _probe(method: str, trial: int = 0):
    p = section("fewshot", samples_per_epoch=96, classifier={"epochs": 3})
    torch.manual_seed(0)
    f_real, y = torch.randn(6, 16), torch.tensor([0, 0, 1, 1, 2, 2])
    f_var = f_real.repeat_interleave(2, 0) + 0.1 * torch.randn(12, 16)
    table = [[2 * i, 2 * i + 1] for i in range(6)]
    head, info = train_probe(p, trial, method, f_real, f_real.flip(-1), y, f_var, f_var.flip(-1), table,
                             lambda: torch.nn.Linear(16, 3))
    return head, info


def test_the_probe_is_reproducible_and_only_variant_methods_swap():
    (h1, i1), (h2, i2) = _probe("dafusion"), _probe("dafusion")
    assert torch.equal(h1.weight, h2.weight) and i1 == i2
    assert 0.4 < i1["swap_rate"] < 0.6
    assert _probe("baseline")[1]["swap_rate"] == 0.0
    assert not torch.equal(_probe("dafusion", trial=1)[0].weight, h1.weight)


def _run(shot, trial, accs):
    return {"shot": shot, "trial": trial, "methods": {
        m: {"accuracy": a, "mean_per_class_accuracy": a - 0.01} for m, a in accs.items()}}


def test_summary_gives_mean_interval_and_paired_difference_per_shot_and_method():
    runs = [_run(1, t, {"baseline": 0.5 + 0.01 * t, "dafusion": 0.6 + 0.02 * t}) for t in range(3)]
    runs += [_run(4, t, {"baseline": 0.7, "dafusion": 0.72 + 0.01 * t}) for t in range(3)]
    s = summarize_runs(runs, 0.95)
    assert s["shots"] == [1, 4] and s["methods"] == ["baseline", "dafusion"]
    row = next(r for r in s["rows"] if r["shot"] == 1 and r["method"] == "dafusion")
    assert row["accuracy"]["mean"] == pytest.approx(0.62)
    assert row["accuracy"]["ci_low"] < 0.62 < row["accuracy"]["ci_high"]
    assert row["vs_baseline"]["mean"] == pytest.approx(0.11) and row["trials"] == [0, 1, 2]
    assert "vs_baseline" not in next(r for r in s["rows"] if r["method"] == "baseline")
    table = markdown_table(s)
    assert "| 1 | dafusion | 3 | 62.00 [" in table and "+11.00" in table
