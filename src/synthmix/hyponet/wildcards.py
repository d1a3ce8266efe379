"""HypoNet: per-class wildcard files of hyponyms, from a sample image, an ImageNet classifier
and WordNet (the prompt-strategy study's "HypoNet" dynamic prompts).

For each class (the source's algorithm, with the choices it left open as ``hyponet.*`` params):

1. take ``samples_per_class`` images of the class from the real training manifest, chosen with
   a seed derived from (``seed``, class name), so adding a class changes no other class;
2. classify them with an ImageNet classifier (:mod:`synthmix.hyponet.imagenet`) and combine the answers
   (``aggregate``): ``vote`` = the most frequent top-1 (ties: higher mean probability),
   ``mean`` = the top-1 of the mean probabilities, ``union`` = every distinct top-1;
3. map the ImageNet class to its WordNet synset (``mapping``): ``offset`` through the wnid,
   which *is* the WordNet 3.0 offset (exact), or ``label_text``, the source's lookup of the
   label's first name (``wn.synsets("crane")[0]`` is the bird even when the machine was meant);
4. check the answer against the class name's own synset (``class_synsets`` or the name):
   an answer that is the class synset or a kind of it (any depth: a sports car for "vehicle")
   is **related**; any other answer is related when the two meet at a common hypernym at most
   ``related_levels`` levels above each. With the default 2: "running shoe" / "sneaker" (1),
   "bulletproof vest" / "pullover" (2, at "garment") are related; "sweatshirt" / "coat" (3, at
   "garment"), "knee pad" / "boot" (3, at "covering") and "pedestal" / "dress" (4, at
   "artifact") are not. An answer below ``min_confidence`` is not. Unrelated answers are
   dropped; when none is left, ``fallback: class_synset`` uses the class's own synset instead
   (reported in the JSON, with the reason), ``fallback: none`` keeps the classifier's answer
   (the source's behaviour);
5. choose the level whose hyponyms become the entries (:func:`candidate_levels`): the
   answer's hypernym (``hypernym``: ``first`` as in the source, ``deepest``, ``all``), its
   hyponyms (``depth``: ``direct`` or the whole ``subtree``), their lemma names (``lemmas``:
   ``first`` per synset or ``all``; ``underscores_to_spaces``), de-duplicated
   case-insensitively, one hypernym higher while fewer than ``min_count`` entries. Answers
   below the class synset never climb above it (then the class's deeper kinds follow), and
   the class synset itself (the fallback, or an answer that *is* the class) gives the class's
   own kinds, as many levels deep as ``min_count`` needs: a broad class ("vehicle", "flower",
   "dog") is never described by its siblings. A narrow class with fewer kinds than
   ``min_count`` in its whole subtree (``sneaker`` = gym_shoe.n.01: only plimsoll) climbs to
   its hypernym's hyponyms as the source did: its siblings;
6. drop every entry that names another class of the study (its name, its synset or a kind
   of it: "golden retriever" for "animal" when "dog" is a class, "sandal" for "sneaker" when
   "sandal" is one), before counting against ``min_count``: such an entry would prompt an
   image of the other class. Classes that contain this one ("animal" for "dog") cannot be
   separated and are listed as not checked. Then a random subset of at most ``max_count``
   (seeded by (``seed``, class)), sorted so the wildcard file diffs cleanly in git.

The per-class report records every step: the sample images, the top-5 answers, the chosen
ImageNet class and confidence, its synset, the relation to the class synset, whether the
fallback was taken and why, the level used and those passed over, how many hyponyms and
entries existed, the entries dropped for naming another class, and the kept entries with
their synsets.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import torch

from synthmix.config import Params
from synthmix.core.errors import DataError, MissingAssetError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.data.images import load_rgb
from synthmix.hyponet import wordnet as W
from synthmix.hyponet.imagenet import (
    ImageNetClassifier,
    imagenet_labels,
    imagenet_wnids,
    needs_inversion,
    short_label,
)

if TYPE_CHECKING:
    from synthmix.config.sections.hyponet import HyponetParams

log = logging.getLogger(__name__)

TOP_K = 5  # answers listed per sample image in the report


@dataclass
class Answer:
    """One ImageNet class the classifier gave, combined over the samples."""

    index: int
    confidence: float  # mean probability over the sample images
    votes: int  # samples whose top-1 it is
    synset: object = None
    extra: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "imagenet_index": self.index,
            "wnid": imagenet_wnids()[self.index],
            "label": imagenet_labels()[self.index],
            "confidence": round(self.confidence, 6),
            "votes": self.votes,
            "synset": self.synset.name() if self.synset is not None else None,
            **self.extra,
        }


def choose_samples(records: list[dict], class_name: str, k: int, seed: int) -> list[dict]:
    """``k`` of the class's records, seeded by (seed, class name) and independent of other classes."""
    pool = sorted((r for r in records if r["label"] == class_name), key=lambda r: r["path"])
    if not pool:
        raise DataError(f"class {class_name!r} has no image in the training manifest: run `dvc repro prepare`")
    if k > len(pool):
        raise DataError(
            f"hyponet.samples_per_class = {k}, but class {class_name!r} has only {len(pool)} training images: "
            f"lower hyponet.samples_per_class to at most {len(pool)}"
        )
    rng = random.Random(derive_seed("hyponet-samples", seed, class_name))
    return rng.sample(pool, k)


def combine(probs: torch.Tensor, aggregate: str) -> list[Answer]:
    """The answers for one class from (n_samples, 1000) probabilities, best first."""
    mean = probs.mean(dim=0)
    top1 = probs.argmax(dim=1).tolist()
    votes = Counter(top1)

    def answer(i: int) -> Answer:
        return Answer(index=i, confidence=float(mean[i]), votes=votes.get(i, 0))

    if aggregate == "mean":
        return [answer(int(mean.argmax()))]
    ranked = sorted(votes, key=lambda i: (-votes[i], -float(mean[i]), i))
    if aggregate == "vote":
        return [answer(ranked[0])]
    if aggregate == "union":
        return [answer(i) for i in ranked]
    raise ValueError(f"unknown aggregate {aggregate!r}")


def answer_synset(wn, index: int, mapping: str):
    """The WordNet synset of ImageNet class ``index``: by wnid offset, or by the label's text."""
    if mapping == "offset":
        return W.synset_from_wnid(wn, imagenet_wnids()[index])
    if mapping == "label_text":
        return W.synset_from_text(wn, short_label(index))
    raise ValueError(f"unknown mapping {mapping!r}")


def judge(answer: Answer, class_syn, params: HyponetParams) -> None:
    """Fill ``answer.extra`` with its relation to the class synset and whether it is accepted.

    An answer that *is* the class synset or descends from it (a sports car for "vehicle", a
    tabby for "cat") is related by definition, however many levels below the class it sits;
    ``related_levels`` only judges answers beside the class (running shoe for "sneaker").
    """
    reasons = []
    distance, common, below = (None, None, None)
    if answer.synset is None:
        reasons.append(f"no WordNet noun synset for the label text {short_label(answer.index)!r}")
    elif class_syn is not None:
        distance, common = W.relation_distance(answer.synset, class_syn)
        below = W.levels_below(answer.synset, class_syn)
        if below is None and (distance is None or distance > params.related_levels):
            reasons.append(
                f"unrelated to {class_syn.name()}: "
                + ("no common hypernym" if distance is None else
                   f"nearest common hypernym {common.name()} is {distance} levels up "
                   f"(hyponet.related_levels = {params.related_levels})")
            )
    if answer.confidence < params.min_confidence:
        reasons.append(f"confidence {answer.confidence:.3f} < hyponet.min_confidence = {params.min_confidence}")
    answer.extra.update({
        "distance_to_class": distance,
        "common_hypernym": common.name() if common is not None else None,
        "levels_below_class": below,  # 0: the class synset itself; None: not a kind of the class
        # True / False, or None: accepted, but with no class synset to compare against
        "related": False if reasons else (None if class_syn is None else True),
        "rejected_because": reasons,
    })  # fmt: skip


def entries_for(hyponyms: list, params: HyponetParams) -> dict[str, object]:
    """``{entry: synset}``: lemma names of the hyponym synsets, formatted, de-duplicated
    case-insensitively (the first synset of a name wins) and sorted."""
    seen, out = set(), {}
    for s in hyponyms:
        names = s.lemma_names()
        for name in names[:1] if params.lemmas == "first" else names:
            text = W.format_lemma(name, params.underscores_to_spaces)
            if text.lower() not in seen:
                seen.add(text.lower())
                out[text] = s
    return {k: out[k] for k in sorted(out, key=lambda t: (t.lower(), t))}


def keep_subset(entries: list[str], class_name: str, params: HyponetParams) -> list[str]:
    """A seeded random subset of at most ``max_count`` entries, sorted for readable diffs."""
    rng = random.Random(derive_seed("hyponet-subset", params.seed, class_name))
    kept = rng.sample(entries, min(params.max_count, len(entries)))
    return sorted(kept, key=lambda t: (t.lower(), t))


def _display_path(path: str) -> str:
    rel = os.path.relpath(path)
    return Path(rel if not rel.startswith("..") else path).as_posix()


def decide(answers: list[Answer], class_syn, class_name: str, params: HyponetParams) -> tuple[list, dict]:
    """The synsets to use (accepted answers, else the fallback) and the fallback record."""
    accepted = [a for a in answers if not a.extra["rejected_because"]]
    fallback = {"taken": False, "reason": None}
    if accepted:
        chosen = [a.synset for a in accepted]
    else:
        why = "; ".join(r for a in answers for r in a.extra["rejected_because"])
        if params.fallback == "class_synset" and class_syn is not None:
            chosen = [class_syn]
            fallback = {"taken": True, "reason": why}
            log.warning("%s: classifier answer rejected (%s): falling back to %s", class_name, why, class_syn.name())
        else:
            chosen = [a.synset for a in answers if a.synset is not None]
            if params.fallback == "class_synset":
                fallback["reason"] = (f"{why}; but the class name has no WordNet synset to fall back to: "
                                      f"set hyponet.class_synsets.{class_name}")
            else:
                fallback["reason"] = f"{why}; kept anyway (hyponet.fallback = none)"
            log.warning("%s: %s", class_name, fallback["reason"])
            if not chosen:
                raise DataError(
                    f"class {class_name!r}: no WordNet synset for the classifier's answer and none for the class "
                    f"name: set hyponet.class_synsets.{class_name} (e.g. a synset name such as jersey.n.03)"
                )
    for a in answers:
        a.extra["used"] = (not fallback["taken"]) and any(a.synset is s for s in chosen)
    return list(dict.fromkeys(chosen)), fallback


@dataclass
class Level:
    """One candidate for the wildcard: the hyponyms of ``synsets`` (``depth`` levels deep for
    the class's own kinds), their entries, and which of them another class claims."""

    kind: str  # "hypernym": hyponyms of hypernyms | "class_kinds": hyponyms of the class synset
    synsets: list
    hyponyms: list
    entries: dict  # entry -> synset, every name the level offers
    depth: int | None = None  # class_kinds: how many levels below the class
    dropped: list = field(default_factory=list)  # entries naming another class (see other_class_conflict)

    @property
    def allowed(self) -> dict:
        gone = {d["entry"] for d in self.dropped}
        return {e: s for e, s in self.entries.items() if e not in gone}

    def describe(self) -> dict:
        if self.kind == "class_kinds":
            return {"class_kinds_of": self.synsets[0].name(), "depth": self.depth, "entries": len(self.allowed)}
        return {"hypernyms": [h.name() for h in self.synsets], "entries": len(self.allowed)}


def _hypernyms(synsets: list, how: str, ceiling=None) -> list:
    """The next level up: the chosen hypernyms (``hyponet.hypernym``) of each synset. Below a
    ``ceiling`` (the class synset) only hypernyms on the way to it count, and the ceiling
    itself is never left, so every level stays inside the class."""
    out: list = []
    for s in synsets:
        if ceiling is not None and s == ceiling:
            cands = [s]
        else:
            cands = W.choose_hypernyms(s, how)
            if ceiling is not None:
                on_path = [h for h in W.listed_hypernyms(s) if W.levels_below(h, ceiling) is not None]
                cands = [h for h in cands if h in on_path] or on_path[:1]
        out.extend(h for h in cands if h not in out)
    return out


def _climb(start: list, params: HyponetParams, ceiling=None):
    """Hypernym levels from ``start``'s hypernyms upwards, to the root or up to ``ceiling``."""
    hypers = _hypernyms(start, params.hypernym, ceiling) or list(start)  # a root synset: its own hyponyms
    seen: list = []
    while hypers and hypers not in seen:
        seen.append(hypers)
        hyponyms = sorted({h for hyper in hypers for h in W.hyponyms_of(hyper, params.depth)}, key=lambda s: s.name())
        yield Level("hypernym", hypers, hyponyms, entries_for(hyponyms, params))
        if ceiling is not None and hypers == [ceiling]:
            return
        hypers = _hypernyms(hypers, params.hypernym, ceiling)


def _class_kinds(class_syn, params: HyponetParams):
    """The class's own kinds: its hyponyms within 1, 2, ... levels (``depth: subtree``: all at once)."""
    if params.depth == "subtree":
        hyponyms = W.hyponyms_of(class_syn, "subtree")
        yield Level("class_kinds", [class_syn], hyponyms, entries_for(hyponyms, params), depth=None)
        return
    found: set = set()
    frontier, depth = [class_syn], 0
    while True:
        frontier = [h for s in frontier for h in W.hyponyms_of(s, "direct") if h not in found]
        if not frontier:
            return
        found.update(frontier)
        depth += 1
        hyponyms = sorted(found, key=lambda s: s.name())
        yield Level("class_kinds", [class_syn], hyponyms, entries_for(hyponyms, params), depth=depth)


def candidate_levels(chosen: list, class_syn, fallback_taken: bool,
                     params: HyponetParams) -> tuple[str, Iterator[Level]]:
    """Where the wildcard may come from, in order of preference, and the mode that ordered them.

    - ``class``: the synset to expand is the class's own (the fallback, or an answer that is
      the class synset itself): its own kinds, one level deeper at a time until ``min_count``
      entries; a narrow class with fewer kinds than that (``sneaker`` = gym_shoe.n.01 has one,
      plimsoll) climbs to its hypernym like the source (the hyponyms of ``shoe``: its siblings);
    - ``within_class``: answers below the class synset (a sports car for "vehicle"): their
      hypernym, climbing while too few, but never above the class synset, then the class's
      deeper kinds: every entry is a kind of the class;
    - ``answer``: any other accepted answer (a sibling of the class, or ``fallback: none``):
      the source's hypernym, climbing while too few.
    """
    if class_syn is not None and (fallback_taken or chosen == [class_syn]):
        return "class", chain(_class_kinds(class_syn, params), _climb([class_syn], params))
    if class_syn is not None and all(W.levels_below(s, class_syn) is not None for s in chosen):
        below = [s for s in chosen if s != class_syn]
        levels = list(_climb(below, params, ceiling=class_syn))  # a few levels, up to the class synset
        known = [set(lv.hyponyms) for lv in levels]
        deeper = (lv for lv in _class_kinds(class_syn, params) if set(lv.hyponyms) not in known)
        return "within_class", chain(levels, deeper)
    return "answer", _climb(chosen, params)


def other_class_synsets(wn, classes: list[str], class_synsets: dict[str, str]) -> dict[str, object]:
    """``{class: synset or None}`` for every class of the study (``hyponet.class_synsets`` first)."""
    return {c: W.class_synset(wn, c, class_synsets) for c in classes}


def other_class_conflict(entry: str, synset, others: dict[str, object]) -> dict | None:
    """Why ``entry`` (a name of ``synset``) would prompt an image of another class, or None:
    it is the synset of one of ``others`` (``{class: synset or None}``), a kind of it, or the
    class's name. An "animal" entry "golden retriever" draws a dog, which belongs to the class
    "dog". Classes that contain this one are left out of ``others`` (:func:`broader_classes`).
    """
    ups = W.hypernym_levels(synset)
    for name, syn in others.items():
        if syn is not None and syn in ups:
            n = ups[syn]
            why = f"is {syn.name()}" if n == 0 else f"a kind of {syn.name()} ({n} level{'s' if n > 1 else ''} below)"
            return {"entry": entry, "synset": synset.name(), "class": name, "why": why}
        if entry.lower() == name.replace("_", " ").lower():
            return {"entry": entry, "synset": synset.name(), "class": name, "why": f"the name of class {name!r}"}
    return None


def broader_classes(own_syn, others: dict[str, object]) -> list[dict]:
    """The other classes that contain this class (the same synset or a hypernym of it): every
    entry is one of them, so entries are not checked against them (a "dog" class in a study
    with "animal" keeps its dogs)."""
    if own_syn is None:
        return []
    return [{"class": name, "synset": syn.name(),
             "why": "the same synset" if syn == own_syn else f"{own_syn.name()} is a kind of {syn.name()}"}
            for name, syn in others.items() if syn is not None and W.levels_below(own_syn, syn) is not None]


def pick_level(levels: Iterable[Level], others: dict, params: HyponetParams) -> tuple[Level, list[Level]]:
    """The first level with at least ``min_count`` entries no class of ``others`` claims (else
    the first of the largest, never the root's 3 abstractions), and the levels passed over."""
    seen: list[Level] = []
    for lv in levels:
        lv.dropped = [c for e, s in lv.entries.items() if (c := other_class_conflict(e, s, others))]
        if len(lv.allowed) >= params.min_count:
            return lv, seen
        seen.append(lv)
    best = max(range(len(seen)), key=lambda i: (len(seen[i].allowed), -i))
    return seen[best], seen[:best]


def wildcard_entries(answers: list[Answer], class_name: str, class_syn, others: dict[str, object],
                     params: HyponetParams) -> tuple[list[str], dict]:
    """Steps 4 to 6 for one class, from the classifier's answers (WordNet only): judge them,
    choose the synsets (or the fallback), the level, drop entries naming other classes
    (``others``: the other classes' synsets), keep a seeded subset. Returns the kept entries
    and that part of the report."""
    others = {c: s for c, s in others.items() if c != class_name}
    for a in answers:
        judge(a, class_syn, params)
    chosen, fallback = decide(answers, class_syn, class_name, params)
    mode, levels = candidate_levels(chosen, class_syn, fallback["taken"], params)
    broader = broader_classes(class_syn, others)
    checked = {c: s for c, s in others.items() if c not in {b["class"] for b in broader}}
    used, passed = pick_level(levels, checked, params)
    allowed = used.allowed
    if not allowed:
        claimed = f" ({len(used.dropped)} named other classes)" if used.dropped else ""
        below = ", ".join(h.name() for h in used.synsets)
        raise DataError(f"class {class_name!r}: no wildcard entry below {below}{claimed}")
    if used.dropped:
        log.warning("%s: dropped %d entries naming other classes: %s", class_name, len(used.dropped),
                    ", ".join(f"{d['entry']} ({d['class']})" for d in used.dropped[:10]))
    kept = keep_subset(list(allowed), class_name, params)
    report = {
        "fallback": fallback,
        "synsets": [s.name() for s in chosen],
        "synset_definitions": {s.name(): s.definition() for s in chosen},
        "mode": mode,  # class | within_class | answer (see synthmix.hyponet.wildcards.candidate_levels)
        "hypernym_choice": params.hypernym,
        "level": used.describe(),
        "hypernyms": [h.name() for h in used.synsets],  # whose hyponyms the entries are
        "climbed_from": [lv.describe() for lv in passed],  # levels with fewer than hyponet.min_count entries
        "depth": params.depth,
        "hyponyms_available": len(used.hyponyms),
        "entries_available": len(allowed),
        "other_classes": {
            "dropped": used.dropped,  # entries that name another class of the study, or a kind of it
            "not_checked": broader,  # classes containing this one
        },
        "n_dropped": len(used.dropped),
        "kept": kept,
        "kept_synsets": {e: allowed[e].name() for e in kept},
        "n_kept": len(kept),
    }  # fmt: skip
    return kept, report


def hyponet_class(wn, classifier: ImageNetClassifier, class_name: str, records: list[dict],
                  params: HyponetParams, others: dict[str, object] | None = None) -> tuple[list[str], dict]:
    """The wildcard entries and the report of one class (``others``: every class's synset,
    :func:`other_class_synsets`; entries naming one of them are dropped)."""
    class_syn = W.class_synset(wn, class_name, params.class_synsets)
    samples = choose_samples(records, class_name, params.samples_per_class, params.seed)
    images = [load_rgb(r["path"]) for r in samples]
    probs = classifier.probabilities(images, params.invert)

    sample_reports = []
    for rec, image, p in zip(samples, images, probs):
        values, indices = p.topk(TOP_K)
        sample_reports.append({
            "path": _display_path(rec["path"]),
            "inverted": needs_inversion(image, params.invert),
            "top5": [{"wnid": imagenet_wnids()[int(i)], "label": imagenet_labels()[int(i)],
                      "p": round(float(v), 6)} for v, i in zip(values, indices)],
        })  # fmt: skip

    answers = combine(probs, params.aggregate)
    for a in answers:
        a.synset = answer_synset(wn, a.index, params.mapping)
    kept, chosen = wildcard_entries(answers, class_name, class_syn, others or {}, params)
    report = {
        "class": class_name,
        "class_synset": class_syn.name() if class_syn is not None else None,
        "class_synset_from": ("hyponet.class_synsets" if class_name in params.class_synsets
                              else "class name" if class_syn is not None else None),
        "classifier": params.classifier,
        "samples": sample_reports,
        "aggregate": params.aggregate,
        "mapping": params.mapping,
        "answers": [a.describe() for a in answers],
        **chosen,
    }  # fmt: skip
    return kept, report


def load_classifier(params: HyponetParams, device: torch.device) -> ImageNetClassifier:
    try:
        return ImageNetClassifier(params.classifier, params.weights, device)
    except MissingAssetError:
        raise
    except (RuntimeError, KeyError) as exc:  # a state dict of another architecture
        raise MissingAssetError(
            f"hyponet.weights = {params.weights!r} does not fit hyponet.classifier = {params.classifier} ({exc})"
        ) from exc


def run_hyponet(params: HyponetParams, classes: list[str], manifest: str | os.PathLike,
                wildcards_dir: str | os.PathLike, reports_dir: str | os.PathLike, device: str = "auto") -> dict:
    """Write ``wildcards_dir/<class>.txt`` and ``reports_dir/<class>.json`` for every class.

    WordNet and the classifier are loaded before any image is read, so a missing asset stops
    the stage at once with the fix. Returns the numeric summary for the metrics file.
    """
    from tqdm import tqdm

    from synthmix.core.atomic import write_json, write_text
    from synthmix.core.device import pick_device
    from synthmix.data.manifest import read_manifest

    wn = W.load_wordnet(params.wordnet)
    unused = sorted(set(params.class_synsets) - set(classes))
    if unused:  # harmless (another class list), but a typo would go unnoticed otherwise
        log.warning("hyponet.class_synsets entries for classes not in prepare.classes: %s", ", ".join(unused))
    # a bad hyponet.class_synsets entry fails before the classifier loads
    synsets = other_class_synsets(wn, classes, params.class_synsets)
    records = read_manifest(manifest)
    classifier = load_classifier(params, pick_device(device))
    wildcards_dir, reports_dir = Path(wildcards_dir), Path(reports_dir)
    summary: dict = {"classifier": params.classifier, "n_classes": len(classes), "n_fallback": 0, "n_dropped": 0,
                     "classes": {}}
    for class_name in tqdm(classes, desc="hyponet", unit="class"):
        kept, report = hyponet_class(wn, classifier, class_name, records, params, synsets)
        path = wildcards_dir / f"{class_name}.txt"
        report["wildcard"] = path.as_posix()
        write_text(path, "".join(f"{entry}\n" for entry in kept))
        write_json(reports_dir / f"{class_name}.json", report)
        top = report["answers"][0]
        summary["n_fallback"] += int(report["fallback"]["taken"])
        summary["n_dropped"] += report["n_dropped"]
        summary["classes"][class_name] = {
            "confidence": top["confidence"],
            "related": int(bool(top["related"])),
            "fallback": int(report["fallback"]["taken"]),
            "hyponyms_available": report["hyponyms_available"],
            "n_dropped": report["n_dropped"],  # entries naming another class (metrics/hyponet/<class>.json)
            "n_kept": report["n_kept"],
        }
        log.info("%s: %s (%.2f) -> %s -> %s: %d of %d entries%s", class_name, top["label"].split(",")[0],
                 top["confidence"], ", ".join(report["synsets"]), ", ".join(report["hypernyms"]),
                 report["n_kept"], report["entries_available"],
                 " (fallback to the class synset)" if report["fallback"]["taken"] else "")
        if report["other_classes"]["not_checked"]:
            log.info("%s: not checked against the broader classes %s", class_name,
                     ", ".join(d["class"] for d in report["other_classes"]["not_checked"]))
    keep = {f"{c}.txt" for c in classes} | {f"{c}.json" for c in classes}
    for folder, suffix in ((wildcards_dir, ".txt"), (reports_dir, ".json")):
        for stale in folder.glob(f"*{suffix}"):  # classes no longer in prepare.classes
            if stale.name not in keep:
                stale.unlink()
    return summary


def hyponet_stage(params: Params, *, manifest: Input, wildcards: Output, reports: Output, metrics: Output) -> None:
    """Stage hyponet: one wildcard file of hyponyms per class (study 3), with a report per class."""
    from synthmix.core.atomic import write_json

    write_json(metrics, run_hyponet(params.hyponet, params.prepare.classes, manifest, wildcards, reports,
                                    device=params.device))
