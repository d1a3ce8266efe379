"""Per-image prompts from templates: wildcards, variants, weights, suffix and negative prompt.

Why its own module: the prompt is part of what defines a synthetic image, so it must be
reproducible per image. Each image draws its prompt from a ``random.Random`` seeded with a
hash of the image's own seed (itself a hash of global seed, class and index), so image ``i``
of class ``c`` gets the same prompt whatever the batch size, resume point or number of
processes (other tools share one wildcard draw per batch, and runs cannot be repeated).

Template syntax (the ``dynamicprompts`` library, not a home-made parser):

- ``{class}``: the class text (``generate.prompt.class_names`` or the label with ``_`` as
  spaces); substituted first, so ``__hyponyms/{class}__`` names a per-class wildcard file;
- ``__name__``: a random line of ``<wildcards_dir>/name.txt`` (``__hyponyms/cat__`` ->
  ``hyponyms/cat.txt``);
- ``{a|b|c}``: one of the variants;
- ``{token}``: the class's learned textual-inversion token (``<cat>``) when
  ``generate.sd.textual_inversion`` is on, else the class text. With textual inversion on and
  no ``{token}`` in a template, ``{class}`` becomes the token (except inside a wildcard name).

Weights (turned into embeddings by ``compel`` in the SD backends): A1111's ``(word:1.4)``,
the source thesis's ``(word):1.4`` and a bare comma-separated item ``worst quality:1.4`` (as
in the thesis's Fp/Fn lists) are rewritten to compel's ``(word)1.4``; compel's own syntax
(``(word)1.4``, ``word+``, ``word--``) passes through unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from synthmix.core.errors import DataError
from synthmix.core.seeding import derive_seed

if TYPE_CHECKING:
    from synthmix.config.sections.generate import PromptParams

_NUM = r"([0-9]*\.?[0-9]+)"
# (text:1.4)  -- A1111
_A1111 = re.compile(r"\(([^():]+):\s*" + _NUM + r"\s*\)")
# (text):1.4  -- the thesis's form
_THESIS = re.compile(r"\(([^()]+)\):\s*" + _NUM)
# , text:1.4 ,  -- a bare weighted item of a comma-separated list
_BARE = re.compile(r"(^|,)(\s*)([^,()]*?[^\s,()]):" + _NUM + r"(?=\s*(,|$))")
_WILDCARD = re.compile(r"__([^\s_][^\s]*?)__")


def to_compel(text: str) -> str:
    """Rewrite A1111 / thesis weight syntax into compel's ``(text)weight``."""
    text = _A1111.sub(lambda m: f"({m.group(1).strip()}){m.group(2)}", text)
    text = _THESIS.sub(lambda m: f"({m.group(1).strip()}){m.group(2)}", text)
    text = _BARE.sub(lambda m: f"{m.group(1)}{m.group(2)}({m.group(3).strip()}){m.group(4)}", text)
    return text


def class_text(label: str, params: PromptParams) -> str:
    return params.class_names.get(label, label.replace("_", " "))


@dataclass(frozen=True)
class ImagePrompt:
    prompt: str  # as drawn, weights in the user's syntax (recorded in the manifest)
    negative: str
    prompt_compel: str  # what compel parses
    negative_compel: str


class PromptBuilder:
    """Draws each image's prompt from its template with an RNG seeded by the image seed."""

    def __init__(self, params: PromptParams, base_dir: str | Path = ".", tokens: dict[str, str] | None = None):
        """``tokens``: class -> its learned textual-inversion token (see the module docstring)."""
        from dynamicprompts.wildcards import WildcardManager

        self.params = params
        self.tokens = dict(tokens or {})
        self.wildcards_dir = Path(base_dir) / params.wildcards_dir
        self.manager = WildcardManager(self.wildcards_dir)

    def template(self, label: str) -> str:
        raw = self.params.class_templates.get(label, self.params.template)
        text = class_text(label, self.params)
        token = self.tokens.get(label)
        if token is None or "{token}" in raw:
            return raw.replace("{token}", token or text).replace("{class}", text)
        # {class} names the wildcard file in __hyponyms/{class}__ and becomes the token elsewhere
        parts = re.split(r"(__[^\s]*?__)", raw)
        return "".join(part.replace("{class}", text if i % 2 else token) for i, part in enumerate(parts))

    def check(self, labels: Sequence[str]) -> None:
        """Fail before any work if a template names a wildcard file that is missing or empty."""
        for label in labels:
            for name in _WILDCARD.findall(self.template(label)):
                if not len(self.manager.get_values(name)):
                    hint = " (written by the hyponet stage: dvc repro hyponet)" if name.startswith("hyponyms/") else ""
                    raise DataError(
                        f"generate.prompt template for class {label!r} uses __{name}__ but "
                        f"{self.wildcards_dir / name}.txt is missing or empty{hint}"
                    )

    def draw(self, label: str, image_seed: int) -> ImagePrompt:
        from dynamicprompts.generators import RandomPromptGenerator

        gen = RandomPromptGenerator(self.manager, seed=derive_seed("prompt", int(image_seed)))
        (prompt,) = gen.generate(self.template(label), 1)
        left = _WILDCARD.findall(prompt)
        if left:
            raise DataError(f"prompt {prompt!r}: wildcard __{left[0]}__ has no values in {self.wildcards_dir}")
        prompt = " ".join(prompt.split())
        if self.params.suffix:
            prompt = f"{prompt}, {self.params.suffix}"
        negative = self.params.negative
        return ImagePrompt(prompt, negative, to_compel(prompt), to_compel(negative))
