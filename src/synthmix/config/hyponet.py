"""Params of the hyponet stage (study 3)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field

from synthmix.config.base import Section


class HyponetParams(Section):
    """HypoNet wildcards (study 3): sample image -> ImageNet class -> WordNet hypernym -> hyponyms."""

    classifier: Literal["efficientnet_lite0", "resnet50"] = "efficientnet_lite0"
    weights: Optional[str] = None  # local weights file; null = the pip package / torchvision cache
    samples_per_class: int = Field(5, ge=1)  # training images classified per class
    aggregate: Literal["vote", "mean", "union"] = "vote"  # how several samples' answers combine
    invert: Union[bool, Literal["auto"]] = "auto"  # auto: grey bright-on-dark images are inverted
    mapping: Literal["offset", "label_text"] = "offset"  # ImageNet class -> synset
    hypernym: Literal["first", "deepest", "all"] = "first"
    depth: Literal["direct", "subtree"] = "direct"
    lemmas: Literal["first", "all"] = "first"  # lemma names taken per hyponym synset
    underscores_to_spaces: bool = True
    max_count: int = Field(40, ge=1)
    min_count: int = Field(5, ge=1)  # fewer entries: climb to the hypernym's hypernym
    seed: int = 0
    fallback: Literal["class_synset", "none"] = "class_synset"
    related_levels: int = Field(2, ge=0)  # related = a common hypernym within this many levels
    min_confidence: float = Field(0.0, ge=0, le=1)  # below: treated as unrelated
    class_synsets: dict[str, str] = {}  # class -> synset name / wnid, for names WordNet lacks
    wordnet: Optional[str] = None  # WordNet folder; null = NLTK's search path
