"""``hyponet``: HypoNet wildcards (study 3)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from synthmix.config.base import FileParam, Section


class HyponetParams(Section):
    """HypoNet wildcards (study 3): sample image -> ImageNet class -> WordNet hypernym -> hyponyms."""

    classifier: Literal["efficientnet_lite0", "resnet50"]
    weights: Annotated[Optional[str], FileParam()]  # local weights file; null = the pip package / torchvision cache
    samples_per_class: int = Field(ge=1)  # training images classified per class
    aggregate: Literal["vote", "mean", "union"]  # how several samples' answers combine
    invert: Union[bool, Literal["auto"]]  # auto: grey bright-on-dark images are inverted
    mapping: Literal["offset", "label_text"]  # ImageNet class -> synset
    hypernym: Literal["first", "deepest", "all"]
    depth: Literal["direct", "subtree"]
    lemmas: Literal["first", "all"]  # lemma names taken per hyponym synset
    underscores_to_spaces: bool
    max_count: int = Field(ge=1)
    min_count: int = Field(ge=1)  # fewer entries: climb to the hypernym's hypernym
    seed: int
    fallback: Literal["class_synset", "none"]
    related_levels: int = Field(ge=0)  # related = a common hypernym within this many levels
    min_confidence: float = Field(ge=0, le=1)  # below: treated as unrelated
    class_synsets: dict[str, str]  # class -> synset name / wnid, for names WordNet lacks
    wordnet: Annotated[Optional[str], FileParam()]  # WordNet folder; null = NLTK's search path


SCHEMA = HyponetParams
