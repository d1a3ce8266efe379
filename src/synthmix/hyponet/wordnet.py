"""WordNet 3.0 through NLTK's reader, installable offline, and the queries HypoNet needs.

Where WordNet comes from (checked in this order):

1. an explicit folder (``hyponet.wordnet`` in params.yaml): an NLTK data folder
   (``DIR/corpora/wordnet``) or the WordNet folder itself (``data.noun``, ``lexnames``, ...);
2. NLTK's own search path (``nltk.data.path``: ``$NLTK_DATA``, ``~/nltk_data``,
   ``<venv>/share/nltk_data``, ``/usr/local/share/nltk_data``, ...), where
   ``nltk.download("wordnet")`` puts it when online and where ``make setup`` builds it offline.

Offline, ``make setup`` installs the Debian packages ``wordnet-base`` and
``wordnet-sense-index`` (``/usr/share/wordnet``) and runs ``python -m synthmix.hyponet.wordnet install``,
which copies those files into ``/usr/local/share/nltk_data/corpora/wordnet`` (or the venv's
``share/nltk_data`` without root) and adds the ``lexnames`` file that Debian omits but NLTK
needs. Copies, not symlinks: NLTK refuses corpus files whose real path escapes the corpus root.
The result is the same WordNet 3.0 as NLTK's download: 117,659 synsets, and a noun synset's
offset is its ImageNet wnid (``tabby.n.01`` = 02123045 = ``n02123045``).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import warnings
from pathlib import Path

from synthmix.core.errors import MissingAssetError, ParamsError

log = logging.getLogger(__name__)

DEBIAN_WORDNET = Path("/usr/share/wordnet")
SYSTEM_NLTK_DATA = Path("/usr/local/share/nltk_data")

# The lexicographer file names in file-number order (lexnames(5WN), WordNet 3.0).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# Files NLTK's WordNetCorpusReader opens (lexnames is written by us).
REQUIRED_FILES = ("lexnames", "data.noun", "index.noun", "data.verb", "index.verb", "data.adj",
                  "index.adj", "data.adv", "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")

SETUP_HINT = (
    "offline: run `make setup` (installs the Debian packages wordnet-base and wordnet-sense-index "
    "and builds an NLTK copy with `python -m synthmix.hyponet.wordnet install`); online: "
    "`python -c 'import nltk; nltk.download(\"wordnet\")'`; or point hyponet.wordnet at a folder holding it"
)


def lexnames_text() -> str:
    """The 45-line ``lexnames`` file: ``NN<TAB>name<TAB>syntactic category``."""
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def install_nltk_wordnet(source: str | Path = DEBIAN_WORDNET, nltk_data: str | Path = SYSTEM_NLTK_DATA) -> Path:
    """Copy a WordNet 3.0 database folder (Debian's layout) into ``nltk_data/corpora/wordnet``.

    Adds the ``lexnames`` file. Idempotent: files already there with the same size are kept.
    Returns the corpus folder.
    """
    source = Path(source)
    if not (source / "data.noun").is_file():
        raise MissingAssetError(
            f"{source} holds no WordNet database (data.noun missing): install the Debian packages "
            "wordnet-base and wordnet-sense-index (`apt-get install wordnet-base wordnet-sense-index`)"
        )
    dest = Path(nltk_data) / "corpora" / "wordnet"
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.iterdir()):
        if not f.is_file():
            continue
        target = dest / f.name
        if target.is_symlink():
            target.unlink()
        if not target.is_file() or target.stat().st_size != f.stat().st_size:
            tmp = dest / f".{f.name}.tmp"
            shutil.copyfile(f, tmp)
            tmp.replace(target)
    lexnames = dest / "lexnames"
    if not lexnames.is_file() or lexnames.read_text() != lexnames_text():
        tmp = dest / ".lexnames.tmp"
        tmp.write_text(lexnames_text())
        tmp.replace(lexnames)
    return dest


def _corpus_dir(folder: Path) -> Path | None:
    """``folder`` itself or ``folder/corpora/wordnet``, whichever holds WordNet's files."""
    for cand in (folder, folder / "corpora" / "wordnet", folder / "wordnet"):
        if (cand / "data.noun").is_file():
            return cand
    return None


def load_wordnet(folder: str | Path | None = None):
    """NLTK's WordNetCorpusReader over WordNet 3.0; a clear MissingAssetError when absent.

    ``folder``: an explicit location (see the module docstring); None searches NLTK's path
    (a folder or NLTK's downloaded ``wordnet.zip``). Readers are cached per location.
    """
    import nltk

    if folder is not None:
        corpus = _corpus_dir(Path(folder))
        if corpus is None:
            raise MissingAssetError(
                f"hyponet.wordnet = {str(folder)!r} holds no WordNet database (looked for data.noun in it, "
                f"in corpora/wordnet and in wordnet below it): set hyponet.wordnet to null to use NLTK's "
                f"search path, or {SETUP_HINT}"
            )
        corpus = str(corpus.resolve())
        # NLTK (>= 3.9) only opens corpus files below a root on nltk.data.path; an explicitly
        # configured folder is trusted by the person who configured it.
        if corpus not in nltk.data.path:
            nltk.data.path.append(corpus)
        pointer = nltk.data.FileSystemPathPointer(corpus)
    else:
        try:
            pointer = nltk.data.find("corpora/wordnet")
        except LookupError:
            raise MissingAssetError(
                f"WordNet for NLTK not found (searched {', '.join(map(str, nltk.data.path))}): {SETUP_HINT}"
            ) from None
    key = str(pointer)
    if key not in _READERS:
        _READERS[key] = _open_reader(pointer)
    return _READERS[key]


_READERS: dict = {}


def _open_reader(pointer):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if isinstance(pointer, nltk.data.FileSystemPathPointer):
        missing = [f for f in REQUIRED_FILES if not (Path(pointer.path) / f).is_file()]
        if missing:
            raise MissingAssetError(f"WordNet at {pointer.path} is incomplete (missing {', '.join(missing)}): {SETUP_HINT}")
    try:
        with warnings.catch_warnings():  # "multilingual functions are not available": no OMW, not needed
            warnings.simplefilter("ignore", UserWarning)
            reader = WordNetCorpusReader(pointer, None)
    except (OSError, ValueError) as exc:
        raise MissingAssetError(f"cannot read WordNet at {pointer} ({exc}): {SETUP_HINT}") from exc
    log.info("WordNet %s from %s", reader.get_version(), pointer)
    return reader


# ----------------------------------------------------------------------------- queries


def wnid(synset) -> str:
    """The ImageNet id of a WordNet 3.0 noun synset: ``n`` + its 8-digit offset."""
    return f"{synset.pos()}{synset.offset():08d}"


def synset_from_wnid(wn, wnid_: str):
    """The synset of an ImageNet wnid such as ``n02123045`` (exact: offsets are WordNet 3.0's)."""
    if len(wnid_) != 9 or wnid_[0] != "n" or not wnid_[1:].isdigit():
        raise ValueError(f"not an ImageNet wnid (n + 8 digits): {wnid_!r}")
    return wn.synset_from_pos_and_offset("n", int(wnid_[1:]))


def synset_from_text(wn, text: str):
    """The first noun synset of a label text (the source's lookup: ``wn.synsets(label)[0]``)."""
    for cand in _name_variants(text):
        found = wn.synsets(cand, pos="n")
        if found:
            return found[0]
    return None


def _name_variants(name: str) -> list[str]:
    base = name.strip().lower().replace(" ", "_")
    variants = [base, base.replace("_", "-"), base.replace("-", "_")]
    return list(dict.fromkeys(v for v in variants if v))


def resolve_synset_spec(wn, spec: str):
    """A synset from ``name.n.01`` (any lemma: ``tee_shirt.n.01``), a wnid, or a word; None if unknown."""
    spec = spec.strip()
    if len(spec) == 9 and spec[0] == "n" and spec[1:].isdigit():
        try:
            return synset_from_wnid(wn, spec)
        except Exception:  # nltk raises WordNetError for unknown offsets
            return None
    if spec.count(".") >= 2:
        try:
            return wn.synset(spec)
        except Exception:  # WordNetError / ValueError for unknown names
            return None
    return synset_from_text(wn, spec)


def class_synset(wn, class_name: str, mapping: dict[str, str]):
    """The synset a class name denotes: ``hyponet.class_synsets[class]`` first, then the name's
    own first noun synset (underscores, spaces and hyphens tried). None when WordNet does not
    know the name; a mapping entry that names no synset is a ParamsError."""
    if class_name in mapping:
        found = resolve_synset_spec(wn, mapping[class_name])
        if found is None:
            raise ParamsError(
                f"hyponet.class_synsets.{class_name} = {mapping[class_name]!r} names no WordNet noun synset: "
                "use a synset name such as jersey.n.03 or tee_shirt.n.01, a wnid such as n03595614, or a word"
            )
        return found
    return synset_from_text(wn, class_name)


def hypernym_levels(synset) -> dict:
    """Every hypernym (and instance hypernym) of ``synset`` with its shortest distance; itself at 0."""
    levels: dict = {}
    for s, d in synset.hypernym_distances():
        if s not in levels or d < levels[s]:
            levels[s] = d
    return levels


def levels_below(synset, ancestor) -> int | None:
    """How many levels ``synset`` lies below ``ancestor`` through (instance) hypernyms: 0 for
    the synset itself, None when it is not a kind of ``ancestor``."""
    return hypernym_levels(synset).get(ancestor)


def relation_distance(a, b) -> tuple[int | None, object]:
    """How closely two synsets are related: the smallest ``max(d_a, d_b)`` over their common
    hypernyms H (``d_x`` = levels from x up to H), and that H. (None, None) without one.

    0 means the same synset; 1 means one is the other's direct hypernym or they are siblings.
    """
    la, lb = hypernym_levels(a), hypernym_levels(b)
    best, best_h = None, None
    for h in sorted(set(la) & set(lb), key=lambda s: s.name()):
        d = max(la[h], lb[h])
        if best is None or d < best:
            best, best_h = d, h
    return best, best_h


def listed_hypernyms(synset) -> list:
    """The synset's hypernyms (else instance hypernyms) in the order WordNet's data file lists them.

    NLTK keeps a synset's pointers in a ``set`` of (pos, offset) tuples, so ``hypernyms()[0]``
    follows Python's per-process string hashing: for ``dog.n.01`` it is ``canine.n.02`` in one
    process and ``domestic_animal.n.01`` in the next. The source's "first hypernym" was thus
    random for synsets with several; here "first" is the data file's first, the same every run.
    """
    wn = synset._wordnet_corpus_reader
    try:
        data = wn._data_file("a" if synset.pos() == "s" else synset.pos())
        data.seek(synset.offset())
        tokens = data.readline().split("|")[0].split()
        i = 4 + 2 * int(tokens[3], 16)  # offset lex_filenum ss_type w_cnt (word lex_id)*w_cnt
        pointers = [tokens[i + 1 + 4 * k: i + 5 + 4 * k] for k in range(int(tokens[i]))]
        found = {sym: [wn.synset_from_pos_and_offset(pos, int(off)) for s_, off, pos, _ in pointers if s_ == sym]
                 for sym in ("@", "@i")}
        ordered = found["@"] or found["@i"]
        if set(ordered) == set(synset.hypernyms() or synset.instance_hypernyms()):
            return ordered
    except (AttributeError, IndexError, ValueError, OSError):  # another reader layout: sort instead
        pass
    return sorted(synset.hypernyms() or synset.instance_hypernyms(), key=lambda s: s.name())


def choose_hypernyms(synset, how: str) -> list:
    """The hypernym(s) whose hyponyms become the wildcard: ``first`` (the source: the first one
    listed, see :func:`listed_hypernyms`), ``deepest`` (the most specific by depth below the
    root), ``all``. A synset with only instance hypernyms (a named entity) uses those."""
    hypers = listed_hypernyms(synset)
    if not hypers:
        return []
    if how == "first":
        return hypers[:1]
    if how == "deepest":
        return [max(hypers, key=lambda s: (s.min_depth(), s.name()))]
    if how == "all":
        return list(hypers)
    raise ValueError(f"unknown hypernym choice {how!r}")


def hyponyms_of(synset, depth: str) -> list:
    """``direct`` hyponyms (incl. instance hyponyms) or the whole ``subtree`` below ``synset``."""
    def children(s):
        return s.hyponyms() + s.instance_hyponyms()

    if depth == "direct":
        found = children(synset)
    elif depth == "subtree":
        found = list(synset.closure(children))
    else:
        raise ValueError(f"unknown hyponym depth {depth!r}")
    return sorted(set(found), key=lambda s: s.name())


def format_lemma(name: str, underscores_to_spaces: bool = True) -> str:
    """A lemma name as a prompt word: ``running_shoe`` -> ``running shoe``."""
    return name.replace("_", " ") if underscores_to_spaces else name


def main(argv: list[str] | None = None) -> None:
    """``python -m synthmix.hyponet.wordnet install [SOURCE] [NLTK_DATA]``: the setup step."""
    parser = argparse.ArgumentParser(prog="python -m synthmix.hyponet.wordnet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    inst = sub.add_parser("install", help="copy a WordNet database folder into an NLTK data folder")
    inst.add_argument("source", nargs="?", default=str(DEBIAN_WORDNET))
    inst.add_argument("nltk_data", nargs="?", default=str(SYSTEM_NLTK_DATA))
    args = parser.parse_args(argv)
    try:
        dest = install_nltk_wordnet(args.source, args.nltk_data)
        wn = load_wordnet(args.nltk_data)
        tabby = wn.synset("tabby.n.01")
    except MissingAssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"WordNet {wn.get_version()} for NLTK in {dest} (tabby.n.01 = {wnid(tabby)})")


if __name__ == "__main__":
    main()
