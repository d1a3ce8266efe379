"""Segmentation branch: label post-processing on hand-made maps, SPADE and label-DDPM shapes and
one training step, mIoU against a hand computation, pair checks and mixes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from shipped_params import section
from synthmix.config import validate_params
from synthmix.core.errors import DataError, ParamsError
from synthmix.mixes import build_seg_mix
from synthmix.segmentation.data import (
    decode_mask,
    find_folder_pairs,
    load_folder_pair,
    pair_record,
    read_pairs,
    save_mask,
    save_rgb,
    split_indices,
    write_pairs,
)
from synthmix.segmentation.metrics import iou_scores
from synthmix.segmentation.postprocess import (
    UNKNOWN,
    encode_labels,
    label_levels,
    postprocess,
    quantize,
    structuring_element,
)
from synthmix.segmentation.spade import (
    MultiscaleDiscriminator,
    SpadeConfig,
    SpadeGAN,
    SPADEGenerator,
    d_hinge_loss,
    g_losses,
    one_hot,
    render,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- post-processing


def test_levels_and_encoding_round_trip():
    assert label_levels(3).tolist() == [0.0, 127.5, 255.0]
    ids = np.array([[0, 1, 2, 255]], np.uint8)
    grey = encode_labels(ids, 3, ignore_index=255)
    assert grey.tolist() == [[0, 128, 255, 0]]  # the ignored pixel is encoded as background
    assert quantize(grey, 3, 0.25).tolist() == [[0, 1, 2, 0]]


def test_small_island_is_removed_and_filled_by_its_surroundings():
    grey = np.zeros((12, 12), np.uint8)  # class 0 everywhere ...
    grey[:, 6:] = 255  # ... class 2 on the right half
    grey[3, 2] = 255  # a one-pixel island of class 2 inside class 0
    mask, report = postprocess(grey, 3, 12, element=structuring_element("square", 2), min_island_size=4)
    assert mask[3, 2] == 0
    assert (mask[:, :6] == 0).all() and (mask[:, 6:] == 2).all()
    assert report.islands_removed == 1
    assert report.ramp_pixels == 0


def test_ramp_edge_takes_the_most_frequent_neighbouring_label():
    grey = np.zeros((8, 8), np.uint8)
    grey[:, 5:] = 255  # class 1 of 2 on the right
    grey[:, 4] = 120  # a column of in-between values: a ramp edge
    grey[6:, 3] = 255  # two class-1 pixels left of the ramp at the bottom
    ids = quantize(grey, 2, 0.25)
    assert (ids[:, 4] == UNKNOWN).all() and (ids[:, :4] != UNKNOWN).all()
    mask, report = postprocess(grey, 2, 8, element=np.ones((1, 1), bool), min_island_size=0, neighbourhood=3)
    assert report.ramp_pixels == 8
    # rows 0..4: 3x3 windows hold 3 (or 2) class-0 pixels and 3 (or 2) class-1 ones: ties go to
    # the lower id only where equal; at rows 1..4 the counts are 3 vs 3 -> class 0
    assert mask[2, 4] == 0
    # rows 6..7: the neighbours are mostly class 1 -> class 1
    assert mask[7, 4] == 1
    assert set(np.unique(mask)) <= {0, 1}


def test_ramp_through_an_intermediate_level_is_opened_away():
    # 0 -> 255 passes through class 1's level (127.5): a one-pixel strip of "class 1"
    grey = np.zeros((10, 10), np.uint8)
    grey[:, 5:] = 255
    grey[:, 5] = 128
    mask, report = postprocess(grey, 3, 10, element=structuring_element("square", 2), min_island_size=0)
    assert 1 not in mask
    assert report.island_pixels >= 10 and report.islands_removed == 1


def test_nearest_upsampling_restores_the_full_size_without_new_labels():
    grey = encode_labels(np.kron(np.array([[0, 1], [2, 3]]), np.ones((4, 4), int)), 4, 255)
    mask, _ = postprocess(grey, 4, 32, min_island_size=0)
    assert mask.shape == (32, 32) and mask.dtype == np.uint8
    assert (mask[:16, :16] == 0).all() and (mask[:16, 16:] == 1).all()
    assert (mask[16:, :16] == 2).all() and (mask[16:, 16:] == 3).all()


def test_structuring_elements():
    assert structuring_element("square", 3).sum() == 9
    assert structuring_element("cross", 3).sum() == 5
    assert structuring_element("disk", 5).sum() == 13


# ---------------------------------------------------------------- mIoU


def test_miou_matches_a_hand_computation():
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 2]])
    s = iou_scores(pred, target, 3, ignore_index=255)
    # class 0: TP 2 (0,0),(1,0); pred-0 = 3, true-0 = 3 -> union 4 -> 0.5
    # class 1: TP 2; pred-1 = 3, true-1 = 2 -> union 3 -> 2/3
    # class 2: TP 1; pred-2 = 1 (the ignored pixel does not count), true-2 = 2 -> union 2 -> 0.5
    assert s["iou"] == pytest.approx([0.5, 2 / 3, 0.5])
    assert s["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert s["pixels"] == 7 and s["pixel_accuracy"] == pytest.approx(5 / 7)


def test_class_absent_everywhere_has_no_iou():
    s = iou_scores(torch.tensor([0, 1]), torch.tensor([0, 1]), 3)
    assert s["iou"] == [1.0, 1.0, None] and s["miou"] == 1.0


# ---------------------------------------------------------------- SPADE


@pytest.fixture
def spade_setup():
    cfg = SpadeConfig(n_classes=3, image_size=32, ngf=8, ndf=8, spade_hidden=8, upsamples=3, z_dim=8)
    params = section("seg_train_spade", lr_g=1e-3, lr_d=1e-3, lambda_l1=10.0)
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    masks[:, 8:24, 4:16] = 1
    masks[:, 10:30, 18:28] = 2
    seg = one_hot(masks, 3)
    real = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    z = torch.randn(4, 8, generator=g)
    return cfg, params, seg, real, z


def test_one_hot_leaves_ignored_pixels_empty():
    oh = one_hot(torch.tensor([[[0, 2, 255]]]), 3)
    assert oh.shape == (1, 3, 1, 3)
    assert oh[0, :, 0, 2].sum() == 0 and oh[0, 2, 0, 1] == 1


def test_spade_shapes(spade_setup):
    cfg, params, seg, real, z = spade_setup
    torch.manual_seed(0)
    gen, disc = SPADEGenerator(cfg), MultiscaleDiscriminator(cfg)
    fake = gen(seg, z)
    assert fake.shape == (4, 3, 32, 32) and fake.abs().max() <= 1
    outs = disc(seg, fake)
    assert len(outs) == cfg.num_d and len(outs[0]) == cfg.d_layers + 1
    assert outs[0][-1].shape[:2] == (4, 1) and outs[1][-1].shape[-1] < outs[0][-1].shape[-1]


def test_one_step_lowers_each_loss_on_a_fixed_batch(spade_setup):
    cfg, params, seg, real, z = spade_setup
    torch.manual_seed(0)
    gan = SpadeGAN(cfg, params)
    gan.g.eval(), gan.d.eval()  # eval: spectral norm keeps its vectors, so losses are comparable

    def d_loss():
        with torch.no_grad():
            return float(d_hinge_loss(gan.d(seg, real), gan.d(seg, gan.g(seg, z))))

    def g_loss():
        with torch.no_grad():
            fake = gan.g(seg, z)
            return float(g_losses(gan.d(seg, fake), gan.d(seg, real), fake, real, 10.0, 10.0)["total"])

    before = d_loss()
    gan.d_step(seg, real, z)
    assert d_loss() < before
    before = g_loss()
    gan.g_step(seg, real, z)
    assert g_loss() < before


def test_rendering_is_deterministic_and_independent_of_batch_mates(spade_setup):
    cfg, *_ = spade_setup
    torch.manual_seed(1)
    gen = SPADEGenerator(cfg).eval()
    masks = np.zeros((3, 32, 32), np.uint8)
    masks[1, 4:20, 4:20] = 1
    masks[2, 10:, :] = 2
    together = render(gen, masks, [11, 12, 13])
    alone = render(gen, masks[1:2], [12])
    assert together.shape == (3, 32, 32, 3) and together.dtype == np.uint8
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1
    assert not np.array_equal(render(gen, masks[1:2], [99]), alone)  # the seed matters


# ---------------------------------------------------------------- label DDPM


def test_label_ddpm_trains_one_step_and_samples_maps_per_seed(tmp_path):
    from synthmix.segmentation.label_ddpm import (
        read_label_info,
        sample_label_maps,
        train_label_ddpm,
    )

    records = []
    for i in range(4):
        m = np.zeros((32, 32), np.uint8)
        m[4 + i : 20, 6:26] = 1 + i % 2
        save_mask(m, tmp_path / f"m{i}.png")
        save_rgb(np.zeros((32, 32, 3), np.uint8), tmp_path / f"i{i}.png")
        records.append(pair_record(tmp_path / f"i{i}.png", tmp_path / f"m{i}.png", "real"))
    params = section("seg_train_labels", resolution=16, block_out_channels=[8, 16], steps=1, batch_size=4)
    info = train_label_ddpm(params, records, ["bg", "a", "b"], 255, tmp_path / "model", torch.device("cpu"))
    assert np.isfinite(info["final_loss"]) and info["params"]["label_dropout"] == 0.0
    assert read_label_info(tmp_path / "model")["classes"] == ["bg", "a", "b"]
    maps = sample_label_maps(tmp_path / "model", [0, 1, 2], seed=5, steps=2, batch_size=3)
    assert maps.shape == (3, 16, 16) and maps.dtype == np.uint8
    again = sample_label_maps(tmp_path / "model", [2], seed=5, steps=2, batch_size=1)
    assert np.abs(again[0].astype(int) - maps[2].astype(int)).max() <= 1


# ---------------------------------------------------------------- pairs and their errors


def _pair_folder(root: Path, n: int = 6, size=(20, 16)) -> None:
    for i in range(n):
        save_rgb(np.full((size[1], size[0], 3), 10 * i, np.uint8), root / "images" / f"p{i}.jpg".replace(".jpg", ".png"))
        m = np.zeros((size[1], size[0]), np.uint8)
        m[: size[1] // 2] = 1
        save_mask(m, root / "masks" / f"p{i}.png")


def test_folder_pairs_are_found_resized_and_split_deterministically(tmp_path):
    _pair_folder(tmp_path)
    pairs = find_folder_pairs(tmp_path)
    assert [p[0].stem for p in pairs] == [f"p{i}" for i in range(6)]
    image, ids = load_folder_pair(*pairs[0], n_classes=2, ignore_index=255, palette=None, size=8)
    assert image.size == (8, 8) and ids.shape == (8, 8) and set(np.unique(ids)) == {0, 1}
    a, b = split_indices(20, 0.2, 0.25, seed=3), split_indices(20, 0.2, 0.25, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(20))
    assert len(a["test"]) == 5 and len(a["val"]) == 4


def test_missing_pairs_are_named(tmp_path):
    _pair_folder(tmp_path, 3)
    (tmp_path / "masks" / "p1.png").unlink()
    save_mask(np.zeros((4, 4), np.uint8), tmp_path / "masks" / "extra.png")
    with pytest.raises(DataError, match=r"images without a mask: \['p1.png'\].*masks without an image: \['extra.png'\]"):
        find_folder_pairs(tmp_path)


def test_mismatched_sizes_name_both_files(tmp_path):
    _pair_folder(tmp_path, 1)
    save_mask(np.zeros((5, 5), np.uint8), tmp_path / "masks" / "p0.png")
    with pytest.raises(DataError, match=r"p0.png is 20x16 but its mask .*p0.png is 5x5"):
        load_folder_pair(*find_folder_pairs(tmp_path)[0], n_classes=2, ignore_index=255, palette=None, size=8)


def test_unknown_mask_values_and_colours_are_named():
    ids = Image.fromarray(np.array([[0, 1, 7, 255]], np.uint8), mode="L")
    with pytest.raises(DataError, match=r"mask m.png holds values \[7\]"):
        decode_mask(ids, "m.png", 2, 255, None)
    rgb = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255], [1, 2, 3]]], np.uint8), mode="RGB")
    assert decode_mask(rgb.crop((0, 0, 2, 1)), "c.png", 2, 255, [[0, 0, 255], [255, 0, 0]]).tolist() == [[1, 0]]
    with pytest.raises(DataError, match=r"c.png holds colours \[\(1, 2, 3\)\]"):
        decode_mask(rgb, "c.png", 2, 255, [[0, 0, 255], [255, 0, 0]])
    with pytest.raises(DataError, match="seg_prepare.palette is null"):
        decode_mask(rgb, "c.png", 2, 255, None)


def test_folder_pairs_prepare_writes_manifests_with_masks(tmp_path):
    from synthmix.segmentation.prepare import prepare_segmentation

    _pair_folder(tmp_path / "src", 8)
    params = section("seg_prepare", source="folder_pairs", root=str(tmp_path / "src"), classes=["bg", "top"],
                              image_size=32, val_fraction=0.25, test_fraction=0.25)  # fmt: skip
    stats = prepare_segmentation(params, tmp_path / "out")
    assert stats["pairs"] == {"train": 4, "val": 2, "test": 2}
    recs = read_pairs(tmp_path / "out" / "train.jsonl")
    assert all(Path(r["mask"]).is_file() and Path(r["path"]).is_file() for r in recs)
    assert np.asarray(Image.open(recs[0]["mask"])).shape == (32, 32)


def test_folder_pairs_copies_across_splits_are_refused_or_dropped(tmp_path):
    from synthmix.segmentation.prepare import prepare_segmentation

    src = tmp_path / "src"
    _pair_folder(src, 8)
    kw = dict(source="folder_pairs", root=str(src), classes=["bg", "top"], image_size=32, val_fraction=0.25,
              test_fraction=0.25)  # fmt: skip
    clean = prepare_segmentation(section("seg_prepare", **kw), tmp_path / "clean")
    assert clean["duplicates"]["total_dropped"] == 0
    split_of = {r["origin"]: s for s in ("train", "val", "test") for r in read_pairs(tmp_path / "clean" / f"{s}.jsonl")}
    train_img = next(o for o, s in sorted(split_of.items()) if s == "train")
    test_img = next(o for o, s in sorted(split_of.items()) if s == "test")
    (src / "images" / test_img).write_bytes((src / "images" / train_img).read_bytes())  # a planted copy
    with pytest.raises(DataError) as err:
        prepare_segmentation(section("seg_prepare", **kw), tmp_path / "refused")
    assert f"test/segmentation: {test_img} = train/segmentation: {train_img}" in str(err.value)
    assert "seg_prepare.duplicates: drop" in str(err.value) and not (tmp_path / "refused").exists()
    stats = prepare_segmentation(section("seg_prepare", **kw, duplicates="drop"), tmp_path / "out")
    assert stats["pairs"] == {"train": 4, "val": 2, "test": 1}
    assert stats["duplicates"] == {"policy": "drop", "dropped": {"train": 0, "val": 0, "test": 1}, "total_dropped": 1}
    test = read_pairs(tmp_path / "out" / "test.jsonl")
    assert test_img not in {r["origin"] for r in test}
    assert len(list((tmp_path / "out" / "images" / "test").iterdir())) == 1
    assert len(list((tmp_path / "out" / "masks" / "test").iterdir())) == 1


# ---------------------------------------------------------------- mixes and params


def _records(tmp_path: Path, n: int, source: str) -> list[dict]:
    return [{"path": f"/{source}/{i}.png", "mask": f"/{source}/m{i}.png", "label": "segmentation",
             "source": source, "sha256": str(i), "index": i} for i in range(n)]  # fmt: skip


def test_replacement_mixes_are_nested_and_fixed_size(tmp_path):
    real, fake = _records(tmp_path, 40, "real"), _records(tmp_path, 20, "synthetic")
    rep0, rep10, rep25 = (build_seg_mix(n, real, fake, seed=0) for n in ("rep0", "rep10", "rep25"))
    assert len(rep0) == len(rep10) == len(rep25) == 40
    assert sum(r["source"] == "synthetic" for r in rep10) == 4
    kept10 = {r["index"] for r in rep10 if r["source"] == "real"}
    kept25 = {r["index"] for r in rep25 if r["source"] == "real"}
    assert kept25 < kept10 and len(kept25) == 30
    add = build_seg_mix("add50", real, fake, seed=0)
    assert len(add) == 60 and sum(r["source"] == "real" for r in add) == 40
    with pytest.raises(DataError, match="raise seg_generate_labels.count to at least 30"):
        build_seg_mix("rep75", real, fake, seed=0)


def test_pair_manifest_paths_are_relative(tmp_path):
    save_rgb(np.zeros((4, 4, 3), np.uint8), tmp_path / "a" / "i.png")
    save_mask(np.zeros((4, 4), np.uint8), tmp_path / "b" / "m.png")
    write_pairs(tmp_path / "c" / "x.jsonl", [pair_record(tmp_path / "a/i.png", tmp_path / "b/m.png", "real")])
    assert '"mask": "../b/m.png"' in (tmp_path / "c" / "x.jsonl").read_text()
    assert read_pairs(tmp_path / "c" / "x.jsonl")[0]["mask"] == str((tmp_path / "b" / "m.png").resolve())


@pytest.fixture
def raw():
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize(
    "section,key,value,fragment",
    [
        ("seg_mix", "names", ["rep0", "half"], "must be repN"),
        ("seg_summarize", "baseline", "rep50", "seg_summarize.baseline = 'rep50' is not one of seg_mix.names"),
        ("seg_generate_labels", "count", 10, "seg_mix rep10 needs 30 synthetic pairs"),
        ("seg_generate_labels", "neighbourhood", 4, "must be odd"),
        ("seg_prepare", "image_size", 48, "multiple of 32"),
        ("seg_prepare", "ignore_index", 2, "collides with a class id"),
        ("seg_train", "models", ["linknet", "segformer"], "seg_train.models.1"),
    ],
)
def test_seg_params_errors_name_the_key(raw, section, key, value, fragment):
    raw = copy.deepcopy(raw)
    raw[section][key] = value
    with pytest.raises(ParamsError, match=None) as info:
        validate_params(raw)
    assert fragment in str(info.value), str(info.value)


def test_scene_set_errors_name_the_seg_keys(tmp_path):
    from synthmix.core.errors import MissingAssetError
    from synthmix.segmentation.prepare import prepare_segmentation

    with pytest.raises(MissingAssetError, match="point seg_prepare.root at .* use seg_prepare.source: folder_pairs"):
        prepare_segmentation(section("seg_prepare", root=str(tmp_path / "nothing")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_scene_masks_are_the_items_own_silhouettes():
    from synthmix.data.sources import ArraySource
    from synthmix.segmentation.scenes import SceneSpec, make_scene

    photos = np.zeros((2, 28, 28), np.uint8)
    photos[0, 4:24, 10:18] = 200  # a "trouser": a bright bar on black
    photos[1, 10:20, 2:26] = 150  # a "sneaker": a wide bar
    source = ArraySource("toy", "toy", ["a", "b"], {"train": (photos, np.array([0, 1]))})
    spec = SceneSpec(size=32, items_per_scene=(1, 1), item_size=(28, 28), threshold=16)
    image, mask, items = make_scene(spec, source, "train", [np.array([0]), np.array([1])], np.random.default_rng(3))
    (item,) = items
    k, x, y = item["class_id"], item["x"], item["y"]
    expected = np.zeros((32, 32), np.uint8)
    expected[y : y + 28, x : x + 28][photos[k - 1] > 16] = k
    assert np.array_equal(mask, expected)
    background = image[mask == 0]
    assert (background == background[0]).all()  # a plain background
    again = make_scene(spec, source, "train", [np.array([0]), np.array([1])], np.random.default_rng(3))
    assert np.array_equal(again[0], image) and np.array_equal(again[1], mask)
