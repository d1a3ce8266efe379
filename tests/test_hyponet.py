"""HypoNet: the algorithm on real photos, the fallback, and the `hyponet` stage under DVC."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from shipped_params import section
from synthmix.config.sections.hyponet import HyponetParams
from synthmix.core.errors import DataError, MissingAssetError
from synthmix.data.manifest import file_sha256, write_manifest
from synthmix.hyponet import wildcards as H
from synthmix.hyponet.imagenet import ImageNetClassifier, imagenet_wnids
from synthmix.hyponet.wordnet import load_wordnet

skdata = pytest.importorskip("skimage.data", reason="scikit-image (test extra) ships the photos")


@pytest.fixture(scope="module")
def wn():
    try:
        return load_wordnet()
    except MissingAssetError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def clf():
    return ImageNetClassifier("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A manifest of real photos: Chelsea labelled "cat" (right) and a coffee cup labelled "dog"
    (a class its image does not show: the classifier's answer, espresso, is unrelated)."""
    root = tmp_path_factory.mktemp("photos")
    records = []
    for label, name in (("cat", "chelsea"), ("dog", "coffee")):
        path = root / f"{name}.png"
        Image.fromarray(getattr(skdata, name)()).save(path)
        records.append({"path": str(path), "label": label, "source": "real", "sha256": file_sha256(path)})
    write_manifest(root / "train.jsonl", records)
    from synthmix.data.manifest import read_manifest

    return read_manifest(root / "train.jsonl")


def params(**kw) -> HyponetParams:
    return section("hyponet", **{"samples_per_class": 1, **kw})


def test_a_correctly_classified_class_uses_the_classifier_answer(wn, clf, photos):
    kept, report = H.hyponet_class(wn, clf, "cat", photos, params())
    answer = report["answers"][0]
    assert answer["wnid"] in {"n02123045", "n02123159", "n02124075"}  # tabby / tiger / Egyptian cat
    assert answer["related"] is True and answer["used"] is True and answer["distance_to_class"] <= 2
    assert report["fallback"] == {"taken": False, "reason": None}
    assert report["hypernyms"] == ["domestic_cat.n.01"]
    assert {"tabby", "Siamese cat", "Persian cat"} <= set(kept) or len(kept) == report["entries_available"]
    assert report["n_kept"] == len(kept) == min(40, report["entries_available"])
    assert kept == sorted(kept, key=lambda t: (t.lower(), t))
    assert report["samples"][0]["top5"][0]["wnid"] == answer["wnid"]


def test_a_misclassified_class_falls_back_to_its_own_synset(wn, clf, photos):
    kept, report = H.hyponet_class(wn, clf, "dog", photos, params())
    answer = report["answers"][0]
    assert answer["label"].startswith("espresso")
    assert answer["related"] is False and answer["used"] is False
    assert report["fallback"]["taken"] is True
    assert "unrelated to dog.n.01" in report["fallback"]["reason"]
    # the class's own kinds (dogs), not its siblings (wolves, foxes) nor coffees
    assert report["synsets"] == ["dog.n.01"] and report["hypernyms"] == ["dog.n.01"]
    assert report["mode"] == "class" and report["level"] == {"class_kinds_of": "dog.n.01", "depth": 1, "entries": 18}
    assert {"puppy", "hunting dog", "poodle"} <= set(kept) and not {"dog", "wolf", "fox"} & set(kept)

    # fallback: none keeps the classifier's answer, as the source did, and says so
    kept, report = H.hyponet_class(wn, clf, "dog", photos, params(fallback="none"))
    assert report["fallback"]["taken"] is False and "kept anyway" in report["fallback"]["reason"]
    assert report["synsets"] == ["espresso.n.01"] and "cappuccino" in kept

    # a confidence threshold rejects even a related answer
    _, report = H.hyponet_class(wn, clf, "cat", photos, params(min_confidence=0.99))
    assert report["fallback"]["taken"] is True and "min_confidence" in report["fallback"]["reason"]


def test_subset_depth_lemmas_and_seed(wn, clf, photos):
    small = params(fallback="class_synset", max_count=3, depth="subtree", lemmas="all")
    kept, report = H.hyponet_class(wn, clf, "dog", photos, small)
    assert len(kept) == 3 and report["entries_available"] > 100  # every dog below dog.n.01
    assert report["level"] == {"class_kinds_of": "dog.n.01", "depth": None, "entries": report["entries_available"]}
    again, _ = H.hyponet_class(wn, clf, "dog", photos, small)
    assert again == kept
    other, _ = H.hyponet_class(wn, clf, "dog", photos, small.model_copy(update={"seed": 1}))
    assert other != kept
    assert all("_" not in entry for entry in kept)


def test_too_few_entries_climb_one_hypernym_up_and_say_so(wn, clf, photos):
    kept, report = H.hyponet_class(wn, clf, "dog", photos, params(fallback="none", min_count=20))
    assert report["climbed_from"] == [{"hypernyms": ["coffee.n.01"], "entries": 13}]
    assert report["hypernyms"] == ["beverage.n.01"] and report["entries_available"] >= 20
    assert "espresso" not in kept and "coffee" in kept  # coffee's siblings now
    # unreachable: the level with the most entries below the root, not the root's 3
    _, report = H.hyponet_class(wn, clf, "dog", photos, params(fallback="none", min_count=1000))
    assert report["hypernyms"] == ["substance.n.07"] and len(report["climbed_from"]) == 3


# ----------------------------------------------------------------------------- WordNet only (no classifier)


def _answer(wn, synset: str, confidence: float = 0.9) -> H.Answer:
    """A classifier answer as combine() gives it, with its synset already mapped."""
    return H.Answer(index=0, confidence=confidence, votes=1, synset=wn.synset(synset))


def _study(wn, classes, class_name, answer, **kw):
    """wildcard_entries for one class of a study of ``classes``, from one answer synset."""
    others = H.other_class_synsets(wn, classes, {})
    return H.wildcard_entries([_answer(wn, answer)], class_name, others[class_name], others, params(**kw))


def _kinds_of(wn, report, synset: str) -> bool:
    from synthmix.hyponet.wordnet import levels_below

    return all(levels_below(wn.synset(s), wn.synset(synset)) is not None for s in report["kept_synsets"].values())


BROAD = ["vehicle", "flower", "dog"]


def test_an_answer_below_a_broad_class_is_related_however_deep(wn):
    # a sports car is 5 levels below vehicle.n.01: related by definition (the bug: rejected as
    # "unrelated" for being more than related_levels below, then the fallback took vehicle's
    # hypernym, whose hyponyms are vehicle's siblings)
    kept, report = _study(wn, BROAD, "vehicle", "sports_car.n.01")
    assert report["fallback"] == {"taken": False, "reason": None}
    assert report["mode"] == "within_class" and report["hypernyms"] == ["car.n.01"]
    assert {"convertible", "coupe", "sedan"} <= set(kept) and _kinds_of(wn, report, "vehicle.n.01")
    a = H.Answer(index=0, confidence=0.9, votes=1, synset=wn.synset("sports_car.n.01"))
    H.judge(a, wn.synset("vehicle.n.01"), params())
    assert a.extra["related"] is True and a.extra["levels_below_class"] == 5 and a.extra["distance_to_class"] == 5
    # a golden retriever for "dog": retrievers, all dogs
    kept, report = _study(wn, BROAD, "dog", "golden_retriever.n.01")
    assert report["hypernyms"] == ["retriever.n.01"] and _kinds_of(wn, report, "dog.n.01")
    # too few at the answer's hypernym: climbs, but never above the class synset
    kept, report = _study(wn, BROAD, "dog", "golden_retriever.n.01", min_count=100)
    assert report["level"] == {"class_kinds_of": "dog.n.01", "depth": 3, "entries": 139}
    assert [lv.get("hypernyms", lv.get("depth")) for lv in report["climbed_from"]] == [
        ["retriever.n.01"], ["sporting_dog.n.01"], ["hunting_dog.n.01"], ["dog.n.01"], 2]
    assert _kinds_of(wn, report, "dog.n.01")


@pytest.mark.parametrize("class_name, synset", [("vehicle", "vehicle.n.01"), ("flower", "flower.n.01"),
                                                ("dog", "dog.n.01")])
def test_broad_class_fallback_yields_its_own_kinds_not_its_siblings(wn, class_name, synset):
    kept, report = _study(wn, BROAD, class_name, "espresso.n.01")  # a misread photo
    assert report["fallback"]["taken"] is True and report["mode"] == "class"
    assert report["level"]["class_kinds_of"] == synset and report["level"]["depth"] == 1
    assert len(kept) >= 5 and _kinds_of(wn, report, synset) and synset not in report["kept_synsets"].values()
    assert report["n_dropped"] == 0 and report["other_classes"] == {"dropped": [], "not_checked": []}
    if class_name == "vehicle":
        assert set(kept) == {"bumper car", "craft", "military vehicle", "rocket", "skibob", "sled", "steamroller",
                             "wheeled vehicle"}  # not conveyance.n.03's "public transport"
    # a class with too few direct kinds goes one level deeper: cat.n.01 has 2 (domestic cat, wildcat)
    kept, report = _study(wn, ["cat"], "cat", "espresso.n.01")
    assert report["level"] == {"class_kinds_of": "cat.n.01", "depth": 2, "entries": report["entries_available"]}
    assert report["climbed_from"] == [{"class_kinds_of": "cat.n.01", "depth": 1, "entries": 2}]
    assert "tabby" in report["kept_synsets"] or "Siamese cat" in kept


def test_narrow_classes_climb_to_siblings_without_the_other_classes(wn):
    shoes = ["sneaker", "sandal"]
    # sneaker = gym_shoe.n.01 has one kind (plimsoll): too few, so its hypernym's hyponyms,
    # the source's siblings (shoes), without the other class "sandal"
    kept, report = _study(wn, shoes, "sneaker", "espresso.n.01")
    assert report["mode"] == "class" and report["hypernyms"] == ["shoe.n.01"]
    assert report["climbed_from"] == [{"class_kinds_of": "gym_shoe.n.01", "depth": 1, "entries": 1}]
    assert report["other_classes"]["dropped"] == [
        {"entry": "sandal", "synset": "sandal.n.01", "class": "sandal", "why": "is sandal.n.01"}]
    assert "sandal" not in kept and {"oxford", "running shoe", "moccasin"} <= set(kept)
    assert report["n_dropped"] == 1 and report["entries_available"] == 26
    # the classifier's "running shoe" beside sneaker (1 level): the same shoes, still no sandal
    kept_rs, report = _study(wn, shoes, "sneaker", "running_shoe.n.01")
    assert report["mode"] == "answer" and report["hypernyms"] == ["shoe.n.01"] and kept_rs == kept
    # sandal.n.01 has 6 kinds of its own, enough: no sneaker among them
    kept, report = _study(wn, shoes, "sandal", "sandal.n.01")  # ImageNet's own "sandal"
    assert report["mode"] == "class" and set(kept) == {"espadrille", "flip-flop", "huarache", "pusher", "scuffer",
                                                        "talaria"}
    # alone, sneaker keeps sandal (nothing to collide with)
    kept, _ = _study(wn, ["sneaker"], "sneaker", "espresso.n.01")
    assert "sandal" in kept


def test_a_broad_class_drops_the_kinds_of_a_narrower_class(wn):
    study = ["dog", "animal"]
    # "animal" from a golden retriever photo: retrievers, sporting dogs, hunting dogs and dogs
    # are all the class "dog"; the first level with 5 non-dog entries is canine.n.02
    kept, report = _study(wn, study, "animal", "golden_retriever.n.01")
    assert report["mode"] == "within_class" and report["hypernyms"] == ["canine.n.02"]
    assert [lv["entries"] for lv in report["climbed_from"]] == [0, 0, 0, 0]
    assert {"wolf", "fox", "jackal"} <= set(kept) and "dog" not in kept
    dropped = {d["entry"]: d for d in report["other_classes"]["dropped"]}
    assert dropped["dog"]["why"] == "is dog.n.01" and dropped["dog"]["class"] == "dog"
    assert report["n_dropped"] == 1
    # the fallback for "animal" (its 47 direct kinds: none is a dog) and a deep subtree
    _, report = _study(wn, study, "animal", "espresso.n.01", depth="subtree", max_count=5)
    assert report["n_dropped"] > 150  # every dog below animal.n.01
    assert all(d["class"] == "dog" and d["why"].startswith(("is dog.n.01", "a kind of dog.n.01"))
               for d in report["other_classes"]["dropped"])
    assert not {d["entry"] for d in report["other_classes"]["dropped"]} & set(report["kept"])
    # the other direction is not checked: every dog is an animal
    kept, report = _study(wn, study, "dog", "espresso.n.01")
    assert report["n_dropped"] == 0 and "puppy" in kept
    assert report["other_classes"]["not_checked"] == [
        {"class": "animal", "synset": "animal.n.01", "why": "dog.n.01 is a kind of animal.n.01"}]


def test_entries_named_like_another_class_are_dropped(wn):
    # truck is a sibling of car: "automobile" from a car-level answer lists no pickup (a truck)
    kept, report = _study(wn, ["automobile", "truck"], "automobile", "sports_car.n.01")
    assert report["mode"] == "within_class" and "pickup" not in kept
    # a class WordNet lacks is matched by its name
    others = {"t_shirt_top": None, "shoe": wn.synset("shoe.n.01")}
    assert H.other_class_conflict("T shirt top", wn.synset("jersey.n.03"), others)["why"] == \
        "the name of class 't_shirt_top'"
    assert H.other_class_conflict("oxford", wn.synset("oxford.n.04"), others) == {
        "entry": "oxford", "synset": "oxford.n.04", "class": "shoe", "why": "a kind of shoe.n.01 (1 level below)"}
    assert H.other_class_conflict("parka", wn.synset("parka.n.01"), others) is None


def test_invalid_hyponet_params_name_the_key():
    import yaml

    from synthmix.config import load_params, validate_params
    from synthmix.core.errors import ParamsError

    raw = yaml.safe_load(open("params.yaml"))
    assert load_params("params.yaml").hyponet.class_synsets == {"t_shirt_top": "tee_shirt.n.01"}
    for key, value, expect in (("aggregate", "median", "hyponet.aggregate = 'median'"),
                               ("max_count", 0, "hyponet.max_count = 0"),
                               ("invert", "sometimes", "hyponet.invert"),
                               ("classifer", "resnet50", "hyponet.classifer: unknown key")):
        bad = {**raw, "hyponet": {**raw["hyponet"], key: value}}
        with pytest.raises(ParamsError, match=expect.replace(".", r"\.")):
            validate_params(bad)


def test_combine_vote_mean_union():
    probs = torch.zeros(3, 1000)
    probs[0, 5], probs[0, 7] = 0.6, 0.4
    probs[1, 5], probs[1, 7] = 0.55, 0.45
    probs[2, 7] = 1.0
    vote = H.combine(probs, "vote")
    assert [a.index for a in vote] == [5] and vote[0].votes == 2
    mean = H.combine(probs, "mean")
    assert [a.index for a in mean] == [7] and mean[0].confidence == pytest.approx((0.4 + 0.45 + 1) / 3)
    assert [a.index for a in H.combine(probs, "union")] == [5, 7]


def test_sample_choice_is_seeded_per_class():
    recs = [{"path": f"/x/{c}/{i}.png", "label": c} for c in ("a", "b") for i in range(20)]
    one = H.choose_samples(recs, "a", 3, seed=0)
    assert one == H.choose_samples(recs + [{"path": "/x/c/0.png", "label": "c"}], "a", 3, seed=0)
    assert all(r["label"] == "a" for r in one)
    assert one != H.choose_samples(recs, "a", 3, seed=1)
    with pytest.raises(DataError, match="hyponet.samples_per_class = 21"):
        H.choose_samples(recs, "a", 21, seed=0)


def test_label_text_mapping_follows_the_source(wn):
    crane_bird = imagenet_wnids().index("n02012849")
    assert H.answer_synset(wn, crane_bird, "offset").name() == "crane.n.05"
    assert H.answer_synset(wn, crane_bird, "label_text").name() == "crane.n.01"  # the writer, as the source would


# ----------------------------------------------------------------------------- the DVC stage


@pytest.mark.e2e
def test_hyponet_stage_under_dvc(tmp_path, wn):
    from dvc_repo import TINY, make_repo, require_fashion_mnist

    require_fashion_mnist()
    repo = make_repo(tmp_path, TINY)
    classes = TINY["prepare"]["classes"]
    assert repo.repro("hyponet") == {"prepare", "hyponet"}

    wild = repo.root / "prompts/wildcards/hyponyms"
    files = {c: (wild / f"{c}.txt").read_text() for c in classes}
    for c, text in files.items():
        lines = text.splitlines()
        assert lines and all(line.strip() == line and line for line in lines), (c, text)
        assert len(lines) == len(set(lines)) <= 40
        report = json.loads((repo.root / f"metrics/hyponet/{c}.json").read_text())
        assert report["kept"] == lines and len(report["samples"]) == 5
        assert report["fallback"]["taken"] == (not report["answers"][0]["related"])
        assert all(s["inverted"] for s in report["samples"])  # Fashion-MNIST: bright on black
    metrics = json.loads((repo.root / "metrics/hyponet.json").read_text())
    assert set(metrics["classes"]) == set(classes)
    t_shirt = json.loads((repo.root / "metrics/hyponet/t_shirt_top.json").read_text())
    assert t_shirt["class_synset"] == "jersey.n.03" and t_shirt["class_synset_from"] == "hyponet.class_synsets"

    # the wildcard files are git-tracked (cache: false), not DVC-cached and git-ignored
    assert "prompts/wildcards/hyponyms/trouser.txt" in repo.run("git", "status", "--porcelain", "-uall").stdout

    # deterministic: a forced re-run writes the same bytes
    assert repo.repro("-f", "-s", "hyponet") == {"hyponet"}
    assert {c: (wild / f"{c}.txt").read_text() for c in classes} == files

    # a params change of the stage re-runs only the stage
    repo.set_params(hyponet={"max_count": 3})
    assert repo.repro("hyponet") == {"hyponet"}
    assert all(len((wild / f"{c}.txt").read_text().splitlines()) <= 3 for c in classes)

    # missing WordNet: a clear message naming the fix, no traceback
    repo.set_params(hyponet={"wordnet": str(tmp_path / "no-wordnet")})
    proc = repo.run(*repo.stage_cmd("hyponet"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "error: hyponet.wordnet" in proc.stderr and "make setup" in proc.stderr
    assert "Traceback" not in proc.stderr
