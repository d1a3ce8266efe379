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
   the two are **related** when they meet at a common hypernym at most ``related_levels``
   levels above each and the confidence is at least ``min_confidence``. With the default 2:
   "jean" / "trouser" (1), "bulletproof vest" / "pullover" (2, at "garment") are related;
   "sweatshirt" / "coat" (3, at "garment"), "knee pad" / "boot" (3, at "covering") and
   "pedestal" / "dress" (4, at "artifact") are not. Unrelated answers are dropped; when none is left,
   ``fallback: class_synset`` uses the class's own synset instead (reported in the JSON, with
   the reason), ``fallback: none`` keeps the classifier's answer (the source's behaviour);
5. take the synset's hypernym (``hypernym``: ``first`` as in the source, ``deepest``, ``all``),
   its hyponyms (``depth``: ``direct`` or the whole ``subtree``), their lemma names
   (``lemmas``: ``first`` per synset or ``all``; ``underscores_to_spaces``), de-duplicated
   case-insensitively, and a random subset of at most ``max_count`` (seeded by
   (``seed``, class)), sorted so the wildcard file diffs cleanly in git.

The per-class report records every step: the sample images, the top-5 answers, the chosen
ImageNet class and confidence, its synset, the relation to the class synset, whether the
fallback was taken and why, the hypernyms, how many hyponyms and entries existed, and the kept
entries.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from synthmix.config.hyponet import HyponetParams
from synthmix.core.errors import DataError, MissingAssetError
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
from synthmix.config import Params
from synthmix.core.stage import Input, Output

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
    """Fill ``answer.extra`` with its relation to the class synset and whether it is accepted."""
    reasons = []
    distance, common = (None, None)
    if answer.synset is None:
        reasons.append(f"no WordNet noun synset for the label text {short_label(answer.index)!r}")
    elif class_syn is not None:
        distance, common = W.relation_distance(answer.synset, class_syn)
        if distance is None or distance > params.related_levels:
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
        # True / False, or None: accepted, but with no class synset to compare against
        "related": False if reasons else (None if class_syn is None else True),
        "rejected_because": reasons,
    })  # fmt: skip


def entries_for(hyponyms: list, params: HyponetParams) -> list[str]:
    """Lemma names of the hyponym synsets, formatted and de-duplicated case-insensitively."""
    seen, out = set(), []
    for s in hyponyms:
        names = s.lemma_names()
        for name in names[:1] if params.lemmas == "first" else names:
            text = W.format_lemma(name, params.underscores_to_spaces)
            if text.lower() not in seen:
                seen.add(text.lower())
                out.append(text)
    return sorted(out, key=lambda t: (t.lower(), t))


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


def wildcard_level(chosen: list, params: HyponetParams) -> tuple[list, list, list[str], list[dict]]:
    """Hypernyms, their hyponyms, the formatted entries, and the levels climbed past.

    Too few siblings (< ``min_count`` entries): climb one hypernym level at a time until there
    are enough. If even the root has too few, the level with the most entries is used (never
    the root's 3 abstractions).
    """
    def level(hypernyms: list):
        hyponyms = sorted({h for hyper in hypernyms for h in W.hyponyms_of(hyper, params.depth)}, key=lambda s: s.name())
        return hypernyms, hyponyms, entries_for(hyponyms, params)

    hypernyms: list = []
    for s in chosen:
        hypernyms.extend(h for h in W.choose_hypernyms(s, params.hypernym) if h not in hypernyms)
    levels = [level(hypernyms or chosen)]  # a root synset: its own hyponyms
    while len(levels[-1][2]) < params.min_count:
        higher: list = []
        for h in levels[-1][0]:
            higher.extend(x for x in W.choose_hypernyms(h, params.hypernym) if x not in higher)
        if not higher:
            break
        levels.append(level(higher))
    used = len(levels) - 1
    if len(levels[used][2]) < params.min_count:
        used = max(range(len(levels)), key=lambda i: (len(levels[i][2]), -i))  # the first of the largest
    climbed = [{"hypernyms": [h.name() for h in lv[0]], "entries": len(lv[2])} for lv in levels[:used]]
    return (*levels[used], climbed)


def hyponet_class(wn, classifier: ImageNetClassifier, class_name: str, records: list[dict],
                  params: HyponetParams) -> tuple[list[str], dict]:
    """The wildcard entries and the report of one class."""
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
        judge(a, class_syn, params)
    chosen, fallback = decide(answers, class_syn, class_name, params)
    hypernyms, hyponyms, entries, climbed = wildcard_level(chosen, params)
    if not entries:
        raise DataError(f"class {class_name!r}: {', '.join(h.name() for h in hypernyms)} has no hyponyms")
    kept = keep_subset(entries, class_name, params)

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
        "fallback": fallback,
        "synsets": [s.name() for s in chosen],
        "synset_definitions": {s.name(): s.definition() for s in chosen},
        "hypernym_choice": params.hypernym,
        "hypernyms": [h.name() for h in hypernyms],
        "climbed_from": climbed,  # hypernyms skipped for having fewer than hyponet.min_count entries
        "depth": params.depth,
        "hyponyms_available": len(hyponyms),
        "entries_available": len(entries),
        "kept": kept,
        "n_kept": len(kept),
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
    for c in classes:  # a bad hyponet.class_synsets entry fails before the classifier loads
        W.class_synset(wn, c, params.class_synsets)
    records = read_manifest(manifest)
    classifier = load_classifier(params, pick_device(device))
    wildcards_dir, reports_dir = Path(wildcards_dir), Path(reports_dir)
    summary: dict = {"classifier": params.classifier, "n_classes": len(classes), "n_fallback": 0, "classes": {}}
    for class_name in tqdm(classes, desc="hyponet", unit="class"):
        kept, report = hyponet_class(wn, classifier, class_name, records, params)
        path = wildcards_dir / f"{class_name}.txt"
        report["wildcard"] = path.as_posix()
        write_text(path, "".join(f"{entry}\n" for entry in kept))
        write_json(reports_dir / f"{class_name}.json", report)
        top = report["answers"][0]
        summary["n_fallback"] += int(report["fallback"]["taken"])
        summary["classes"][class_name] = {
            "confidence": top["confidence"],
            "related": int(bool(top["related"])),
            "fallback": int(report["fallback"]["taken"]),
            "hyponyms_available": report["hyponyms_available"],
            "n_kept": report["n_kept"],
        }
        log.info("%s: %s (%.2f) -> %s -> %s: %d of %d entries%s", class_name, top["label"].split(",")[0],
                 top["confidence"], ", ".join(report["synsets"]), ", ".join(report["hypernyms"]),
                 report["n_kept"], report["entries_available"],
                 " (fallback to the class synset)" if report["fallback"]["taken"] else "")
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
