"""Prompt templates: wildcards, variants, per-class overrides, seeded per-image draws, weight syntax."""

from __future__ import annotations

from pathlib import Path

import pytest
from compel import Compel

from shipped_params import section
from synthmix.config.sections.generate import PromptParams
from synthmix.core.errors import DataError
from synthmix.core.seeding import image_seed
from synthmix.generators.prompts import PromptBuilder, to_compel
from synthmix.testing.clip_vocab import (
    build_clip_tokenizer_files,
    bytes_to_unicode,
    clip_tokenizer,
)

REPO = Path(__file__).resolve().parents[1]
FP = "best quality, 8k, realistic, photo-realistic:1.4"
FN = "worst quality:1.4, low quality:1.4, watermark:1.4, drawings, abstract art, human"


@pytest.fixture()
def wildcards(tmp_path: Path) -> Path:
    root = tmp_path / "wc"
    (root / "hyponyms").mkdir(parents=True)
    (root / "view.txt").write_text("Side View\nFrontal View\nRear View\nTop-Down View\nClose-Up View\n")
    (root / "color.txt").write_text("\n".join(f"colour{i}" for i in range(45)) + "\n")
    (root / "location.txt").write_text("\n".join(f"place{i}" for i in range(45)) + "\n")
    (root / "hyponyms" / "cat.txt").write_text("tabby\npersian cat\nsiamese cat\n")
    (root / "hyponyms" / "ship.txt").write_text("liner\ncontainer ship\n")
    return root


def _params(wc: Path, **kw) -> PromptParams:
    base = dict(
        template="__view__ of a __color__ (__hyponyms/{class}__):1.4 in __location__",
        class_templates={"cat": "__view__ of a (__hyponyms/{class}__):1.4 in __location__"},
        suffix=FP, negative=FN, wildcards_dir=str(wc),
    )
    base.update(kw)
    return section("generate.prompt", **base)


def test_weight_syntax_becomes_compel():
    assert to_compel("a (cat:1.4) on a mat") == "a (cat)1.4 on a mat"  # A1111
    assert to_compel("Side View of a (tabby cat):1.4 in a park") == "Side View of a (tabby cat)1.4 in a park"  # thesis
    assert to_compel(FP) == "best quality, 8k, realistic, (photo-realistic)1.4"
    assert to_compel(FN).startswith("(worst quality)1.4, (low quality)1.4, (watermark)1.4, drawings")
    assert to_compel("a (dog)0.5 and a bird+") == "a (dog)0.5 and a bird+"  # compel syntax unchanged
    parsed = Compel.parse_prompt_string(to_compel("a (tabby cat):1.4 in a park"))
    weights = {f.text: f.weight for f in parsed.prompts[0].children}
    assert weights["tabby cat"] == pytest.approx(1.4) and weights["a"] == 1.0


def test_each_image_draws_its_own_reproducible_prompt(wildcards):
    builder = PromptBuilder(_params(wildcards))
    builder.check(["cat", "ship"])
    seeds = [image_seed(0, "ship", i) for i in range(40)]
    drawn = [builder.draw("ship", s) for s in seeds]
    # the same seed gives the same prompt, in any order and from a fresh builder
    again = {s: PromptBuilder(_params(wildcards)).draw("ship", s) for s in reversed(seeds)}
    assert all(again[s] == d for s, d in zip(seeds, drawn))
    # different images get different draws (40 images, 5 x 45 x 2 x 45 combinations)
    assert len({d.prompt for d in drawn}) > 30
    for d in drawn:
        view, rest = d.prompt.split(" of a ", 1)
        assert view in {"Side View", "Frontal View", "Rear View", "Top-Down View", "Close-Up View"}
        assert "(liner):1.4" in rest or "(container ship):1.4" in rest
        assert rest.split(" ")[0].startswith("colour")
        assert d.prompt.endswith(", " + FP) and d.negative == FN
        assert "(liner)1.4" in d.prompt_compel or "(container ship)1.4" in d.prompt_compel
        assert d.negative_compel.startswith("(worst quality)1.4")


def test_class_override_variants_and_class_names(wildcards):
    builder = PromptBuilder(_params(wildcards))
    cat = builder.draw("cat", 5).prompt
    assert "colour" not in cat and any(h in cat for h in ("tabby", "persian cat", "siamese cat"))
    p = section("generate.prompt", template="a {red|blue} {class}", class_names={"t_shirt": "T-shirt"}, wildcards_dir=str(wildcards))
    texts = {PromptBuilder(p).draw("t_shirt", s).prompt for s in range(30)}
    assert texts == {"a red T-shirt", "a blue T-shirt"}
    assert PromptBuilder(p).draw("dress_coat", 1).prompt.endswith(" dress coat")


def test_missing_wildcard_files_are_named(wildcards):
    builder = PromptBuilder(_params(wildcards))
    with pytest.raises(DataError, match=r"hyponyms/horse.*dvc repro hyponet"):
        builder.check(["horse"])
    (wildcards / "hyponyms" / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="missing or empty"):
        builder.check(["empty"])


def test_shipped_wildcard_files():
    root = REPO / "prompts" / "wildcards"
    lines = {n: (root / f"{n}.txt").read_text().splitlines() for n in ("view", "color", "location")}
    assert lines["view"] == ["Side View", "Frontal View", "Rear View", "Top-Down View", "Close-Up View"]
    assert len(set(lines["color"])) == 45 and len(set(lines["location"])) == 45
    # the thesis's table 3-1, as published (README.md there names the source)
    assert lines["color"][:3] == ["Red", "Blue", "Green"] and lines["color"][-1] == "Charcoal"
    assert lines["location"][:3] == ["City", "Village", "Island"] and lines["location"][-1] == "Everglades"
    assert "table 3-1" in (root / "README.md").read_text()
    builder = PromptBuilder(section("generate.prompt", template="__view__ of a __color__ {class} in __location__",
                                         wildcards_dir=str(root)))
    builder.check(["car"])
    assert " car in " in builder.draw("car", 3).prompt


def test_clip_vocabulary_rebuilt_offline(tmp_path):
    build_clip_tokenizer_files(tmp_path)
    tok = clip_tokenizer(tmp_path)
    assert len(tok) == 49408 and len(bytes_to_unicode()) == 256
    # CLIP's ids (as open_clip's own tokenizer gives them)
    from open_clip.tokenizer import SimpleTokenizer

    text = "A photorealistic, highly detailed 8K photograph of a tabby cat!"
    assert tok(text).input_ids == [49406, *SimpleTokenizer().encode(text), 49407]
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
