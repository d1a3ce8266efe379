"""WordNet 3.0 as installed offline by `make setup` (Debian files + lexnames), read by NLTK."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from synthmix.core.errors import MissingAssetError, ParamsError
from synthmix.hyponet import wordnet as W
from synthmix.hyponet.imagenet import imagenet_wnids


def _wordnet_or_skip():
    try:
        return W.load_wordnet()
    except MissingAssetError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"WordNet missing in CI: scripts/setup.sh should install it ({exc})")
        pytest.skip(f"WordNet not installed: run `make setup` ({exc})")


@pytest.fixture(scope="module")
def wn():
    return _wordnet_or_skip()


def test_wordnet_3_0_with_117659_synsets(wn):
    assert wn.get_version() == "3.0"
    root = Path(wn.root.path)
    # Each synset is one line of data.<pos> (the licence header lines start with spaces), the
    # same lines wn.all_synsets() parses, counted here without building 117k objects.
    counts = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / f"data.{pos}", encoding="utf-8") as fh:
            counts[pos] = sum(1 for line in fh if not line.startswith("  "))
    assert counts == {"noun": 82115, "verb": 13767, "adj": 18156, "adv": 3621}
    assert sum(counts.values()) == 117659


def test_hypernyms_and_hyponyms_of_dog(wn):
    dog = wn.synset("dog.n.01")
    assert {s.name() for s in dog.hypernyms()} == {"canine.n.02", "domestic_animal.n.01"}
    assert W.choose_hypernyms(dog, "first") == [wn.synset("canine.n.02")]  # WordNet's listed order
    assert W.choose_hypernyms(dog, "deepest") == [wn.synset("canine.n.02")]  # below carnivore, not animal
    assert set(W.choose_hypernyms(dog, "all")) == set(dog.hypernyms())
    puppies = W.hyponyms_of(dog, "direct")
    assert wn.synset("puppy.n.01") in puppies
    assert len(W.hyponyms_of(dog, "subtree")) > len(puppies)
    assert wn.synset("dalmatian.n.02") in W.hyponyms_of(dog, "subtree")


def test_imagenet_wnid_is_the_wordnet_offset(wn):
    tabby = wn.synset("tabby.n.01")
    assert tabby.offset() == 2123045 and W.wnid(tabby) == "n02123045"
    assert W.synset_from_wnid(wn, "n02123045") == tabby
    assert imagenet_wnids()[281] == "n02123045"
    # every ImageNet-1k class is a WordNet 3.0 noun synset
    synsets = [W.synset_from_wnid(wn, w) for w in imagenet_wnids()]
    assert len(set(synsets)) == 1000 and all(s.pos() == "n" for s in synsets)


def test_label_text_lookup_is_ambiguous_offsets_are_not(wn):
    bird, machine = imagenet_wnids().index("n02012849"), imagenet_wnids().index("n03126707")  # both "crane"
    assert W.synset_from_wnid(wn, "n02012849").name() == "crane.n.05"  # the bird
    assert W.synset_from_wnid(wn, "n03126707").name() == "crane.n.04"  # the machine
    assert W.synset_from_text(wn, "crane") == wn.synset("crane.n.01")  # Stephen Crane, the writer
    assert bird != machine


def test_relation_distance(wn):
    s = wn.synset
    assert W.relation_distance(s("jean.n.01"), s("trouser.n.01")) == (1, s("trouser.n.01"))
    assert W.relation_distance(s("running_shoe.n.01"), s("gym_shoe.n.01")) == (1, s("shoe.n.01"))
    assert W.relation_distance(s("sweatshirt.n.01"), s("coat.n.01")) == (3, s("garment.n.01"))
    assert W.relation_distance(s("pedestal.n.03"), s("dress.n.01"))[1] == s("artifact.n.01")


def test_class_synsets_by_name_mapping_and_error(wn):
    assert W.class_synset(wn, "sneaker", {}) == wn.synset("gym_shoe.n.01")
    assert W.class_synset(wn, "trouser", {}) == wn.synset("trouser.n.01")
    assert W.class_synset(wn, "t_shirt_top", {}) is None
    assert W.class_synset(wn, "t_shirt_top", {"t_shirt_top": "tee_shirt.n.01"}) == wn.synset("jersey.n.03")
    assert W.class_synset(wn, "t_shirt_top", {"t_shirt_top": "n03595614"}) == wn.synset("jersey.n.03")
    with pytest.raises(ParamsError, match=r"hyponet.class_synsets.t_shirt_top = 'no_such_thing.n.01'"):
        W.class_synset(wn, "t_shirt_top", {"t_shirt_top": "no_such_thing.n.01"})


def test_lemma_formatting():
    assert W.format_lemma("running_shoe") == "running shoe"
    assert W.format_lemma("running_shoe", underscores_to_spaces=False) == "running_shoe"


def test_lexnames_file_has_45_lines():
    lines = W.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[5] == "05\tnoun.animal\t1" and lines[44] == "44\tadj.ppl\t3"


@pytest.mark.skipif(not (W.DEBIAN_WORDNET / "data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_install_builds_a_readable_nltk_copy(tmp_path):
    dest = W.install_nltk_wordnet(W.DEBIAN_WORDNET, tmp_path / "nltk_data")
    assert (dest / "lexnames").read_text() == W.lexnames_text()
    assert not any(p.is_symlink() for p in dest.iterdir())  # NLTK refuses links out of the root
    W.install_nltk_wordnet(W.DEBIAN_WORDNET, tmp_path / "nltk_data")  # idempotent
    wn = W.load_wordnet(tmp_path / "nltk_data")
    assert wn.synset("tabby.n.01").offset() == 2123045


def test_missing_wordnet_names_the_fix(tmp_path, monkeypatch):
    import nltk

    with pytest.raises(MissingAssetError) as err:
        W.load_wordnet(tmp_path / "nowhere")
    assert "hyponet.wordnet" in str(err.value) and "make setup" in str(err.value)

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.delenv("NLTK_DATA", raising=False)
    with pytest.raises(MissingAssetError) as err:
        W.load_wordnet()
    msg = str(err.value)
    assert "make setup" in msg and 'nltk.download("wordnet")' in msg and "wordnet-base" in msg


@pytest.mark.skipif(not (W.DEBIAN_WORDNET / "data.noun").is_file(), reason="Debian wordnet-base not installed")
def test_wordnet_without_lexnames_is_reported(tmp_path):
    corpus = tmp_path / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    for f in W.REQUIRED_FILES[1:]:
        shutil.copyfile(W.DEBIAN_WORDNET / f, corpus / f)
    with pytest.raises(MissingAssetError, match="missing lexnames"):
        W.load_wordnet(tmp_path)
