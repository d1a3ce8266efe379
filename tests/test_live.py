"""DVCLive per-epoch metrics (synthmix.core.live) and the seg_train stage's DVCLive folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from shipped_params import shipped
from synthmix.core.errors import DataError
from synthmix.core.live import live_metrics, log_epoch, read_metric

REPO = Path(__file__).resolve().parents[1]


def test_dvclive_writes_only_its_folder_and_stays_off_the_repository_and_studio(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_STUDIO_TOKEN", "not-a-token")  # would post to Studio if not offline
    monkeypatch.delenv("DVC_STUDIO_OFFLINE", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVCLive's VS Code step signal goes to $DVC_ROOT/.dvc/tmp
    run = tmp_path / "run"
    import subprocess

    def repo_state() -> list[str]:
        # .dvc/tmp is DVC's own scratch folder (git-ignored), made by any DVC command that opens the
        # repository (a `btime` stamp): opening the repository read-only may create it
        out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
        return [line for line in out.splitlines() if line != "!! .dvc/tmp/"]

    before = repo_state()
    with live_metrics(run / "metrics.json", run / "plots/metrics") as live:
        # the working directory is this repository: DVCLive may read it, never write to it or post
        assert live._studio_events_to_skip >= {"start", "data", "done"}
        live.summary.update(mix="pct0")
        for epoch in (1, 2):
            log_epoch(live, {"epoch": epoch, "loss": 1 / epoch})
        live.summary.update(best_epoch=2)
    assert json.loads((run / "metrics.json").read_text()) == {"mix": "pct0", "loss": 0.5, "step": 2, "best_epoch": 2}
    assert (run / "plots/metrics/loss.tsv").read_text().splitlines() == ["step\tloss", "1\t1.0", "2\t0.5"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        ".dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED", "run/metrics.json", "run/plots/metrics/loss.tsv"]
    assert read_metric(run, "loss") == [(1, 1.0), (2, 0.5)] and read_metric(run, "missing") == []
    assert "DVC_STUDIO_OFFLINE" not in os.environ  # set only while DVCLive starts
    assert repo_state() == before  # nothing written into this repository (no dvc init, no git add)


def test_metrics_and_plots_must_be_one_folder(tmp_path):
    with pytest.raises(DataError, match="one DVCLive folder"):
        with live_metrics(tmp_path / "a/metrics.json", tmp_path / "b/plots/metrics"):
            pass


def test_seg_train_stage_logs_epochs_with_dvclive(tmp_path, monkeypatch):
    from synthmix.config import load_params
    from synthmix.runner import stage_parser
    from synthmix.segmentation.data import pair_record, save_mask, save_rgb, write_pairs
    from synthmix.segmentation.train import seg_train_stage

    monkeypatch.chdir(tmp_path)
    raw = shipped()
    raw = {**raw, "device": "cpu",
           "seg_train": {**raw["seg_train"], "epochs": 2, "batch_size": 4, "encoder_weights": None, "seeds": [0]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    rng = np.random.default_rng(0)

    def pairs(split, n):
        recs = []
        for i in range(n):
            mask = np.zeros((32, 32), np.uint8)
            mask[8:24, 8 + i % 4 : 20 + i % 4] = 1
            image = np.clip(rng.normal(60 + 120 * mask[..., None], 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            save_rgb(image, tmp_path / f"pairs/{split}/{i}.png")
            save_mask(mask, tmp_path / f"pairs/{split}/{i}_m.png")
            recs.append(pair_record(tmp_path / f"pairs/{split}/{i}.png", tmp_path / f"pairs/{split}/{i}_m.png", "real"))
        return recs

    write_pairs(tmp_path / "data/seg/mixes/rep0.jsonl", pairs("train", 8))
    write_pairs(tmp_path / "data/seg/real/val.jsonl", pairs("val", 4))
    (tmp_path / "data/seg/real/classes.json").write_text(json.dumps(
        {"classes": ["background", "item"], "ignore_index": 255, "image_size": 32, "colors": [[0, 0, 0], [255, 0, 0]]}))
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["seg_train"]["cmd"]
    for key, value in {"mix": "rep0", "model": "linknet", "seed": "0"}.items():
        cmd = cmd.replace("${item.%s}" % key, value)
    args = vars(stage_parser(seg_train_stage).parse_args(cmd.split()[2:]))
    seg_train_stage(load_params(args.pop("params")), **args)

    run = tmp_path / "metrics/seg/train/rep0-linknet-seed0"
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == [
        "metrics.json", "plots/metrics/train_loss.tsv", "plots/metrics/val_miou.tsv"]
    summary = json.loads((run / "metrics.json").read_text())
    curve = read_metric(run, "val_miou")
    assert [s for s, _ in curve] == [1, 2] and summary["step"] == 2 and summary["val_miou"] == curve[-1][1]
    assert summary["best_val_miou"] == pytest.approx(max(v for _, v in curve), abs=1e-5)
    assert summary["mix"] == "rep0" and summary["model"] == "linknet" and summary["train_pairs"] == 8
