"""Stage fewshot_variants: the image-to-image variants of a few-shot run's real images, per method."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from synthmix.core.errors import ParamsError
from synthmix.core.paths import Input, Output
from synthmix.fewshot.subsets import REAL, VARIANT_METHODS, draw_subset, run_name  # noqa: F401

if TYPE_CHECKING:
    from synthmix.config import Params


def method_generate_params(params: Params, method: str):
    """generate's params for one method's variants: DA-Fusion = generate.img2img as set;
    Real Guidance = one strength and the class name allowed in the prompt (textual inversion off:
    the prompt is generate.prompt's template with the class text)."""
    g = params.generate
    img2img = g.img2img
    sd = g.sd
    if method == "real_guidance":
        img2img = img2img.model_copy(update={"strengths": [params.fewshot.real_guidance_strength], "probs": None,
                                             "forbid_class_names": False})
        sd = sd.model_copy(update={"textual_inversion": False})
    elif method != "dafusion":
        raise ParamsError(f"fewshot method {method!r} makes no variants")
    return g.model_copy(update={"mode": "img2img", "img2img": img2img, "sd": sd})


def variants_stage(params: Params, shot: int, trial: int, *, real: Input, classes: Input, model: Input,
                   lora: Input, textual_inversion: Input, erased: Input, out: Output) -> None:
    """Stage fewshot_variants: the (shot, trial) real subset (``real.jsonl``) and, per method that
    needs them, ``generate.img2img.per_image`` image-to-image variants of each subset image
    (``<method>/manifest.jsonl`` + images, resumable like generate)."""
    from synthmix.core.atomic import building_dir, write_json
    from synthmix.data.classes import read_classes
    from synthmix.data.manifest import read_manifest, write_manifest
    from synthmix.generate import device_for_rank, generate_synthetic

    p = params.fewshot
    class_list = read_classes(classes)
    subset = draw_subset(read_manifest(real), class_list, shot, p.seed, trial)
    stats = {"shot": shot, "trial": trial, "n_real": len(subset)}
    name = run_name(shot, trial)
    scratch_root = Path(out).parent / ".partial" / name  # per run: matrix stages may run side by side
    with building_dir(out) as tmp:
        write_manifest(tmp / REAL, subset)
        for method in (m for m in p.methods if m in VARIANT_METHODS):
            result = generate_synthetic(
                method_generate_params(params, method), model, tmp / method, device=device_for_rank(params.device, 1),
                scratch_root=scratch_root / method, classes=class_list, lora_dir=lora, ti_dir=textual_inversion,
                erased_dir=erased, sources=subset,
            )
            stats[method] = {k: result[k] for k in ("total", "generated", "reused")}
        write_json(tmp / "variants.json", stats)
    for leftover in (scratch_root, scratch_root.parent):
        try:
            leftover.rmdir()
        except OSError:
            pass
    print(f"{out}: {len(subset)} real images, " + ", ".join(
        f"{m}: {stats[m]['total']} variants" for m in p.methods if m in VARIANT_METHODS))
