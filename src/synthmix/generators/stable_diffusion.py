"""Stable Diffusion 1.x/2.x (backend ``sd``) and SDXL (``sdxl``, optional refiner) for the generate stage.

Why this shape:

- **Loading** goes through diffusers' own code paths, so whatever users bring works: a hub id
  (``from_pretrained``, from the Hugging Face cache first, then the network), a local
  diffusers folder (``from_pretrained``) or one ``.safetensors``/``.ckpt`` file
  (``from_single_file``). Offline, ``from_single_file`` needs the component configs and
  tokenizers of the architecture: ``generate.sd.config`` = a local diffusers folder of the
  same model family (diffusers would otherwise try to download them from the hub).
  Problems are :class:`~synthmix.core.errors.MissingAssetError` naming ``generate.sd.model``,
  raised when the backend opens, i.e. before any image is made.
- **Prompts** (:mod:`synthmix.generators.prompts`) are drawn per image; weights and prompts longer than
  77 tokens are turned into embeddings by ``compel`` (``CompelForSD`` / ``CompelForSDXL``),
  positive and negative padded to the same length. Each image's conditioning is built on its
  own, so an image never depends on its batch-mates' prompt lengths; images whose
  conditionings have the same length are sampled together. The (shared) negative prompt of
  SD 1.x is encoded once.
- **Seeds and shapes**: one CPU ``torch.Generator`` per image (a list passed to the
  pipeline), so the starting latents and the ancestral noise of Euler a depend only on the
  image's seed; every pipeline call has exactly ``generate.sd.forward_batch`` images (the
  last one padded), because kernels round differently for different batch shapes. Together
  these make an image's bytes independent of batch size, resume point and process count.
- **Speed** on a GPU: fp16 (bf16 on request), PyTorch SDPA attention (diffusers' default
  processor), channels_last UNet, optional ``torch.compile``; PNG encoding happens on the
  writer threads of :mod:`synthmix.generate`.
- **FreeU** (``pipe.enable_freeu``) with the study's factors per family and **LoRA**
  (``load_lora_weights`` + ``set_adapters`` with scales, through peft; optionally per class,
  switched between pipeline calls) are recorded in every manifest line and in the
  scratch-folder key. :func:`regenerate` makes one image again from its manifest line.
- **Trained adapters** (:mod:`synthmix.personalize`): ``generate.sd.trained_lora`` adds the
  train_lora stage's LoRAs to that list (a per-class one only for its class);
  ``generate.sd.textual_inversion`` loads each class's learned token (``load_textual_inversion``,
  SDXL into both text encoders), puts it into the prompt (see :mod:`synthmix.generators.prompts`)
  and expands a multi-vector token ``<cat>`` to ``<cat> <cat>_1 ...`` before compel encodes it.
  Their files' sha256s are in every manifest line.
- The safety checker is not loaded (``safety_checker=None``): it blacks out false positives
  in a training set and needs its own CLIP weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from synthmix.config.sections.generate import GenerateParams
from synthmix.core.errors import DataError, MissingAssetError, ParamsError
from synthmix.data.manifest import file_sha256
from synthmix.generators.adapters import (
    TrainedEmbedding,
    check_model,
    load_embeddings_into,
    trained_embeddings,
    trained_loras,
    vector_tokens,
)
from synthmix.generators.erased import erased_sha256
from synthmix.generators.img2img import check_no_class_names, load_source, variant_fields
from synthmix.generators.prompts import PromptBuilder
from synthmix.generators.schedulers import SCHEDULERS, make_scheduler

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
DEFAULT_SIZE = {"sd": 512, "sdxl": 1024}


def model_kind(source: str, kind: str = "auto", key: str = "generate.sd.model") -> str:
    """folder | single_file | hub for a model reference; a missing local path is an error."""
    path = Path(source).expanduser()
    if kind == "auto":
        if path.is_dir():
            kind = "folder"
        elif path.is_file():
            kind = "single_file"
        elif path.suffix.lower() in SINGLE_FILE_SUFFIXES or source.startswith((".", "/", "~")) or source.count("/") > 1:
            raise MissingAssetError(
                f"{key} = {source!r}: no such file or folder. Set it to a local diffusers folder, a "
                ".safetensors/.ckpt file, or a hub id such as stable-diffusion-v1-5/stable-diffusion-v1-5"
            )
        else:
            kind = "hub"
    if kind == "folder" and not (path / "model_index.json").is_file():
        raise MissingAssetError(
            f"{key} = {source!r} is not a diffusers pipeline folder (no model_index.json): "
            "give the folder written by save_pretrained, or a single .safetensors/.ckpt file"
        )
    if kind == "single_file" and not path.is_file():
        raise MissingAssetError(f"{key} = {source!r}: file not found")
    return kind


def weights_sha256(source: str, kind: str) -> str:
    """A hash naming the weights: a folder's UNet/VAE/text-encoder weight files, the single file,
    a hub model's cached snapshot (or its id when it is not cached)."""
    if kind == "given":
        return "given:" + source
    if kind == "single_file":
        return file_sha256(Path(source).expanduser())
    if kind == "hub":  # after loading: the cached snapshot's files (a revision change shows)
        try:
            from huggingface_hub import snapshot_download

            return weights_sha256(snapshot_download(source, local_files_only=True), "folder")
        except Exception:  # noqa: BLE001 -- not (fully) cached: name the id only
            return "hub:" + source
    if kind == "folder":
        root = Path(source).expanduser()
        files = sorted(p for sub in ("unet", "vae", "text_encoder", "text_encoder_2") for p in (root / sub).glob("*")
                       if p.suffix in (".safetensors", ".bin"))
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.relative_to(root).as_posix()}:{file_sha256(p)}\n".encode())
        return h.hexdigest()
    raise ValueError(f"unknown model kind {kind!r}")


def _lora_file(path: str, weight_name: str | None) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / (weight_name or "pytorch_lora_weights.safetensors")
    if not p.is_file():
        raise MissingAssetError(f"generate.sd.loras: LoRA file {p} not found")
    return p


def load_pipeline(cls, source: str, kind: str, dtype: torch.dtype, config: str | None = None,
                  key: str = "generate.sd.model", **kwargs):
    """``cls.from_pretrained`` / ``from_single_file`` with errors that name the param to fix."""
    kwargs = {"torch_dtype": dtype, **kwargs}
    try:
        if kind == "folder":
            return cls.from_pretrained(str(Path(source).expanduser()), local_files_only=True, **kwargs)
        if kind == "single_file":
            if config is None and os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
                raise MissingAssetError(
                    f"{key} = {source!r} is a single file; offline, diffusers needs the architecture's "
                    "configs: set generate.sd.config to a local diffusers folder of the same model family"
                )
            extra = {"config": str(Path(config).expanduser()) if config and Path(config).expanduser().exists() else config}
            return cls.from_single_file(str(Path(source).expanduser()), **extra, **kwargs)
        try:  # hub id: the local Hugging Face cache first, then the network
            return cls.from_pretrained(source, local_files_only=True, **kwargs)
        except (OSError, ValueError):
            if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
                raise
            return cls.from_pretrained(source, **kwargs)
    except MissingAssetError:
        raise
    except Exception as exc:  # noqa: BLE001 -- diffusers/hub raise many types; all mean "cannot load"
        hint = {
            "single_file": " (for a single file offline, also set generate.sd.config to a local diffusers "
                           "folder with its configs)",
            "hub": f" (if {source!r} was meant as a local folder: it does not exist here)",
        }.get(kind, "")
        raise MissingAssetError(
            f"{key} = {source!r} ({kind}) could not be loaded: {type(exc).__name__}: {str(exc)[:400]}. "
            "Without network, set it to a local diffusers folder or a .safetensors/.ckpt file" + hint
        ) from exc


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32  # CPU: fp32 (fp16 kernels are slow or missing there)
    return {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]


class StableDiffusionBackend:
    """txt2img with SD 1.x/2.x (``family="sd"``) or SDXL (``family="sdxl"``, optional refiner)."""

    mode = "RGB"

    def __init__(self, params: GenerateParams, model_dir: Path | None, device: torch.device, family: str,
                 classes: Sequence[str] | None = None, pipe=None, lora_dir: Path | None = None,
                 ti_dir: Path | None = None, embeddings: dict[str, TrainedEmbedding] | None = None,
                 erased_dir: Path | None = None):
        """``pipe``: an already built pipeline to use instead of loading ``generate.sd.model``
        (benchmarks/generation.py injects a random-weight SD 1.5 this way). ``lora_dir`` /
        ``ti_dir``: the train_lora / train_textual_inversion outputs, read when
        ``generate.sd.trained_lora`` / ``textual_inversion`` are on; ``embeddings``: class ->
        learned token given directly (:func:`regenerate`)."""
        self.params, self.sd, self.family, self.device = params, params.sd, family, device
        self.name = family
        self.classes = list(classes) if classes is not None else _read_classes(model_dir)
        self.lora_dir, self.ti_dir = lora_dir, ti_dir
        if self.sd.erased and erased_dir is None:
            raise ParamsError("generate.sd.erased = true needs the erase stage's folder (--erased models/erased)")
        self.erased_dir = erased_dir if self.sd.erased else None
        self.erased_sha256 = erased_sha256(erased_dir) if self.erased_dir is not None else None
        self.embeddings: dict[str, TrainedEmbedding] = dict(embeddings or {})
        if self.sd.textual_inversion and embeddings is None:
            if ti_dir is None:
                raise ParamsError("generate.sd.textual_inversion = true needs the train_textual_inversion stage's "
                                  "folder (generate --textual-inversion models/textual_inversion)")
            self.embeddings = trained_embeddings(ti_dir, family)
            missing = [c for c in self.classes if c not in self.embeddings]
            if missing:
                raise DataError(f"{ti_dir} has no learned token for classes {missing}: run dvc repro "
                                "train_textual_inversion")
        self.prompts = PromptBuilder(params.prompt, tokens={c: e.token for c, e in self.embeddings.items()})
        self.prompts.check(self.classes)  # missing wildcard files: fail before loading weights
        sd = self.sd
        self.width = sd.width or DEFAULT_SIZE[family]
        self.height = sd.height or DEFAULT_SIZE[family]
        self.size = (self.width, self.height)
        self.resolution = self.width
        self.save_size = sd.save_size
        self.kind = model_kind(sd.model, sd.model_kind) if pipe is None else "given"
        self.refiner_kind = model_kind(sd.refiner, "auto", "generate.sd.refiner") if sd.refiner else None
        self.loras = [(_lora_file(lo.path, lo.weight_name), float(lo.scale)) for lo in sd.loras]
        self.lora_classes = [set(lo.classes) for lo in sd.loras]  # empty = every class
        if sd.trained_lora:
            if lora_dir is None:
                raise ParamsError("generate.sd.trained_lora = true needs the train_lora stage's folder "
                                  "(generate --lora models/lora)")
            for lo in trained_loras(lora_dir, family):
                self.loras.append((lo.path, 1.0))
                self.lora_classes.append(set(lo.classes))
        self.dtype = pick_dtype(sd.dtype, device)
        if self.kind != "hub":  # local files: hash before loading (a hub model is hashed once cached)
            self.model_sha256 = weights_sha256(sd.model, self.kind)
        self.lora_records = [
            {"path": str(p), "sha256": file_sha256(p), "scale": s} for p, s in self.loras
        ]
        self._active: tuple[int, ...] | None = None  # LoRA adapters currently enabled (indices)
        self.freeu = sd.freeu.resolved(family) if sd.freeu.enabled else None
        self._load(pipe)
        if self.kind == "hub":
            self.model_sha256 = weights_sha256(sd.model, "hub")
        if self.kind != "given":  # adapters trained on other weights would silently do something else
            if sd.trained_lora:
                check_model(lora_dir, self.model_sha256, "generate.sd.trained_lora", "train_lora")
            if sd.textual_inversion and ti_dir is not None:
                check_model(ti_dir, self.model_sha256, "generate.sd.textual_inversion", "train_textual_inversion")
        self.refiner_sha256 = weights_sha256(sd.refiner, self.refiner_kind) if sd.refiner else None

    # ---------------------------------------------------------------- loading
    def _load(self, pipe=None) -> None:
        from diffusers import (
            StableDiffusionPipeline,
            StableDiffusionXLImg2ImgPipeline,
            StableDiffusionXLPipeline,
        )

        sd = self.sd
        log.info("loading %s model %s (%s) in %s on %s", self.family, sd.model, self.kind, self.dtype, self.device)
        if pipe is not None:
            if pipe.unet.dtype != self.dtype:
                pipe = pipe.to(dtype=self.dtype)
        elif self.family == "sd":
            pipe = load_pipeline(StableDiffusionPipeline, sd.model, self.kind, self.dtype, sd.config,
                                 safety_checker=None, requires_safety_checker=False)
        else:
            pipe = load_pipeline(StableDiffusionXLPipeline, sd.model, self.kind, self.dtype, sd.config)
        pipe.scheduler = make_scheduler(sd.scheduler, pipe.scheduler.config)
        if self.erased_dir is not None:  # ESD-erased UNet in place of the model's (before any LoRA)
            from synthmix.generators.erased import load_erased_unet

            pipe.unet = load_erased_unet(self.erased_dir, getattr(self, "model_sha256", None), torch.device("cpu"),
                                         self.dtype)
        for emb in self.embeddings.values():
            try:
                load_embeddings_into(pipe, self.family, emb.path, emb.token)
            except Exception as exc:  # noqa: BLE001
                raise DataError(f"{emb.path}: not a textual inversion for this model ({exc}): run dvc repro "
                                "train_textual_inversion") from exc
        if self.loras:
            names = []
            for i, (path, scale) in enumerate(self.loras):
                name = f"lora{i}"
                try:
                    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
                except Exception as exc:  # noqa: BLE001
                    raise MissingAssetError(f"generate.sd.loras[{i}] = {path}: not a LoRA for this model ({exc})") from exc
                names.append(name)
            pipe.set_adapters(names, adapter_weights=[s for _, s in self.loras])
            self._active = tuple(range(len(self.loras)))
        if self.freeu:
            pipe.enable_freeu(**self.freeu)
        self.pipe = self._prepare(pipe)
        self.refiner = None
        if sd.refiner:
            refiner = load_pipeline(
                StableDiffusionXLImg2ImgPipeline, sd.refiner, self.refiner_kind, self.dtype, None,
                key="generate.sd.refiner", text_encoder_2=pipe.text_encoder_2, vae=pipe.vae,
                **({"tokenizer_2": pipe.tokenizer_2} if self.embeddings else {}),  # it knows the learned tokens
            )
            refiner.scheduler = make_scheduler(sd.scheduler, refiner.scheduler.config)
            self.refiner = self._prepare(refiner)
        self._compel()

    def _prepare(self, pipe):
        pipe.set_progress_bar_config(disable=True)
        pipe.to(self.device)
        if self.device.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if self.sd.compile:
            pipe.unet = torch.compile(pipe.unet, mode="max-autotune-no-cudagraphs")
        return pipe

    def _compel(self) -> None:
        from compel import Compel, CompelForSD, CompelForSDXL, ReturnedEmbeddingsType

        self._negatives: dict[str, torch.Tensor] = {}
        if self.family == "sd":
            self.compel = CompelForSD(self.pipe)
        else:
            self.compel = CompelForSDXL(self.pipe)
        self.refiner_compel = None
        if self.refiner is not None:
            self.refiner_compel = Compel(
                tokenizer=self.refiner.tokenizer_2, text_encoder=self.refiner.text_encoder_2,
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                requires_pooled=True, truncate_long_prompts=False,
            )

    # ---------------------------------------------------------------- the Backend protocol
    def content_key(self) -> dict:
        return {
            "family": self.family,
            "model_sha256": self.model_sha256,
            "refiner_sha256": self.refiner_sha256,
            "refiner_switch": self.sd.refiner_switch if self.sd.refiner else None,
            "scheduler": self.sd.scheduler,
            "steps": self.sd.steps,
            "guidance_scale": float(self.sd.guidance_scale),
            "size": [self.width, self.height],
            "dtype": str(self.dtype),
            "freeu": self.freeu,
            "loras": [(r["sha256"], r["scale"], sorted(c)) for r, c in zip(self.lora_records, self.lora_classes)],
            "textual_inversion": sorted((c, e.token, e.sha256) for c, e in self.embeddings.items()),
            "erased_unet": self.erased_sha256,
            "save_size": self.save_size,
            "forward_batch": self.sd.forward_batch,
            "prompt": self.params.prompt.model_dump(),
            "wildcards": wildcards_sha256(self.prompts.wildcards_dir),
        }

    def active_loras(self, label: str) -> tuple[int, ...]:
        """Indices of the LoRAs that apply to class ``label``."""
        return tuple(i for i, cs in enumerate(self.lora_classes) if not cs or label in cs)

    def _use_loras(self, active: tuple[int, ...]) -> None:
        """Enable exactly the adapters ``active`` (with their scales) before a pipeline call."""
        if not self.loras or active == self._active:
            return
        if active:
            self.pipe.enable_lora()
            self.pipe.set_adapters([f"lora{i}" for i in active], adapter_weights=[self.loras[i][1] for i in active])
        else:
            self.pipe.disable_lora()
        self._active = active

    def sampling_record(self, label: str | None = None) -> dict:
        return {
            "generator": self.family,
            "model": self.sd.model,
            "model_sha256": self.model_sha256,
            "refiner": self.sd.refiner,
            "refiner_switch": self.sd.refiner_switch if self.sd.refiner else None,
            "scheduler": self.sd.scheduler,
            "sampler": SCHEDULERS[self.sd.scheduler].describe(),
            "steps": self.sd.steps,
            "guidance_scale": float(self.sd.guidance_scale),
            "width": self.width,
            "height": self.height,
            "dtype": str(self.dtype).replace("torch.", ""),
            "freeu": self.freeu,
            "loras": [self.lora_records[i] for i in (self.active_loras(label) if label is not None
                                                     else range(len(self.lora_records)))],
            "textual_inversion": (self.embeddings[label].record() if label in self.embeddings else None)
            if label is not None else {c: e.record() for c, e in self.embeddings.items()} or None,
            "forward_batch": self.sd.forward_batch,
            **({"erased_unet": {"path": str(self.erased_dir), "sha256": self.erased_sha256}} if self.erased_dir else {}),
        }

    def record_fields(self, job) -> dict:
        p = self.prompts.draw(job.label, job.seed)
        return {"seed": job.seed, "index": job.index, "prompt": p.prompt, "negative_prompt": p.negative,
                **self.sampling_record(job.label),
                **({"img2img": self.family + "_img2img", **variant_fields(job)} if job.is_img2img else {})}

    def check_prompts(self, jobs: Sequence) -> None:
        """Leakage control of image-to-image runs: no prompt may contain a class name (the
        classes' labels and their ``generate.prompt.class_names`` texts); learnt tokens are fine."""
        names = list(self.classes) + list(self.params.prompt.class_names.values())
        check_no_class_names(((j.label, self.prompts.draw(j.label, j.seed).prompt) for j in jobs), names)

    def img2img_pipeline(self):
        """diffusers' img2img pipeline over the loaded pipeline's modules (no second copy of the
        weights; LoRA adapters, learnt tokens and FreeU come along), built on first use."""
        if getattr(self, "_img2img", None) is None:
            if self.refiner is not None:
                raise ParamsError("generate.mode img2img with an sdxl refiner is not supported: set "
                                  "generate.sd.refiner: null")
            from diffusers import AutoPipelineForImage2Image

            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    # ---------------------------------------------------------------- sampling
    def expand_tokens(self, text: str) -> str:
        """A multi-vector learned token written out as its tokens: <cat> -> <cat> <cat>_1 <cat>_2 <cat>_3."""
        for emb in self.embeddings.values():
            if emb.num_vectors > 1:
                text = re.sub(re.escape(emb.token) + r"(?!_\d)", " ".join(vector_tokens(emb.token, emb.num_vectors)),
                              text)
        return text

    def conditioning(self, prompt: str, negative: str):
        """(embeds, negative embeds[, pooled, negative pooled]) of one image, pos/neg equal length."""
        prompt, negative = self.expand_tokens(prompt), self.expand_tokens(negative)
        with torch.no_grad():
            if self.family == "sd":  # what CompelForSD does, with the (shared) negative encoded once
                comp = self.compel.compel
                if negative not in self._negatives:
                    self._negatives = {negative: comp.build_conditioning_tensor(negative)}
                pos = comp.build_conditioning_tensor(prompt)
                return tuple(comp.pad_conditioning_tensors_to_same_length([pos, self._negatives[negative]]))
            c = self.compel(prompt, negative_prompt=negative)
        return (c.embeds, c.negative_embeds, c.pooled_embeds, c.negative_pooled_embeds)

    def refiner_conditioning(self, prompt: str, negative: str):
        prompt, negative = self.expand_tokens(prompt), self.expand_tokens(negative)
        with torch.no_grad():
            pos, pos_pooled = self.refiner_compel(prompt)
            neg, neg_pooled = self.refiner_compel(negative)
            pos, neg = self.refiner_compel.pad_conditioning_tensors_to_same_length([pos, neg])
        return (pos, neg, pos_pooled, neg_pooled)

    def generate(self, jobs: Sequence, draws: Sequence | None = None) -> list[Image.Image]:
        """One image per job; prompts drawn per job unless ``draws`` (ImagePrompt per job) are given."""
        draws = list(draws) if draws is not None else [self.prompts.draw(j.label, j.seed) for j in jobs]
        out: list[Image.Image | None] = [None] * len(jobs)
        fb = self.sd.forward_batch
        by_lora: dict[tuple[int, ...], list[int]] = {}  # per-class LoRAs: the same adapters per call
        for i, j in enumerate(jobs):  # and one img2img strength per call
            by_lora.setdefault((self.active_loras(j.label), j.strength), []).append(i)
        for (active, _strength), members in by_lora.items():
            self._use_loras(active)  # before encoding: a LoRA may patch the text encoder too
            conds = {i: self.conditioning(draws[i].prompt_compel, draws[i].negative_compel) for i in members}
            by_length: dict[int, list[int]] = {}  # the same token length per call
            for i in members:
                by_length.setdefault(conds[i][0].shape[1], []).append(i)
            for idx in by_length.values():
                for lo in range(0, len(idx), fb):
                    part = idx[lo : lo + fb]
                    # always exactly forward_batch images per call (the last chunk padded with a copy):
                    # kernels round differently for different batch shapes, and an image must not
                    # depend on how many others are generated with it
                    pad = part + [part[-1]] * (fb - len(part))
                    images = self._sample([jobs[i] for i in pad], [conds[i] for i in pad], [draws[i] for i in pad])
                    for i, im in zip(part, images):
                        out[i] = im
        return out  # type: ignore[return-value]

    def _sample(self, jobs, conds, draws) -> list[Image.Image]:
        cat = lambda k: torch.cat([c[k] for c in conds]).to(self.device, self.dtype)  # noqa: E731
        gens = [torch.Generator().manual_seed(int(j.seed)) for j in jobs]
        common = dict(
            num_inference_steps=self.sd.steps, guidance_scale=self.sd.guidance_scale,
            width=self.width, height=self.height, generator=gens,
            prompt_embeds=cat(0), negative_prompt_embeds=cat(1),
        )
        if jobs[0].is_img2img:  # the real images, at the output size; strength is one per call
            common.pop("width"), common.pop("height")
            common.update(image=[load_source(j, (self.width, self.height), "RGB") for j in jobs],
                          strength=jobs[0].strength)
            if self.family == "sdxl":
                common.update(pooled_prompt_embeds=cat(2), negative_pooled_prompt_embeds=cat(3))
            with torch.inference_mode():
                return self.img2img_pipeline()(**common, output_type="pil").images
        with torch.inference_mode():
            if self.family == "sd":
                return self.pipe(**common, output_type="pil").images
            common.update(pooled_prompt_embeds=cat(2), negative_pooled_prompt_embeds=cat(3))
            if self.refiner is None:
                return self.pipe(**common, output_type="pil").images
            latents = self.pipe(**common, denoising_end=self.sd.refiner_switch, output_type="latent").images
            rconds = [self.refiner_conditioning(d.prompt_compel, d.negative_compel) for d in draws]
            rcat = lambda k: torch.cat([c[k] for c in rconds]).to(self.device, self.dtype)  # noqa: E731
            return self.refiner(
                image=latents, num_inference_steps=self.sd.steps, guidance_scale=self.sd.guidance_scale,
                denoising_start=self.sd.refiner_switch, generator=gens,
                prompt_embeds=rcat(0), negative_prompt_embeds=rcat(1),
                pooled_prompt_embeds=rcat(2), negative_pooled_prompt_embeds=rcat(3), output_type="pil",
            ).images


def regenerate(record: dict, device: torch.device | str = "cpu") -> Image.Image:
    """Make one image again from its manifest line (model, prompt, seed, every sampling setting).

    The recorded prompt is used as it is (no wildcard draw), so the wildcard files need not
    exist; on the same device and dtype the PNG is byte-identical to the recorded one.
    """
    from synthmix.generators.base import Job
    from synthmix.generators.prompts import ImagePrompt, to_compel

    freeu = record.get("freeu")
    sd = {
        "model": record["model"], "refiner": record.get("refiner"), "scheduler": record["scheduler"],
        "steps": record["steps"], "guidance_scale": record["guidance_scale"], "width": record["width"],
        "height": record["height"], "forward_batch": record["forward_batch"],
        "refiner_switch": record.get("refiner_switch") or 0.8,
        "dtype": {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(record.get("dtype"), "auto"),
        "freeu": {"enabled": True, **freeu} if freeu else {"enabled": False, "b1": None, "b2": None, "s1": None, "s2": None},
        "loras": [{"path": lo["path"], "scale": lo["scale"]} for lo in record.get("loras") or []],
        "erased": False, "trained_lora": False, "textual_inversion": False,  # trained LoRAs are in "loras"; the token below
        # not recorded because they do not change pixels (a single-file model needs its config
        # offline: regenerate from a folder or hub id, or pass the record through generate)
        "model_kind": "auto", "config": None, "compile": False, "save_size": None,
    }
    # the prompt is given whole below (no template draw); batch and writer settings do not change pixels
    prompt = {"template": record["prompt"], "class_templates": {}, "class_names": {}, "suffix": "",
              "negative": record["negative_prompt"], "wildcards_dir": "prompts/wildcards"}
    variant = "source_sha256" in record  # an img2img variant: its source image and strength
    img2img = {"per_image": 1, "strengths": [record.get("strength", 1.0)], "probs": None, "forbid_class_names": False}
    params = GenerateParams(backend=record["generator"], mode="img2img" if variant else "txt2img", per_class=1,
                            steps=record["steps"], guidance_scale=record["guidance_scale"], batch_size=1,
                            seed=int(record["seed"]), write_threads=0, sd=sd, prompt=prompt, img2img=img2img)
    if record.get("erased_unet"):
        raise ParamsError("regenerate: this image was made with an ESD-erased UNet; re-run generate instead")
    ti = record.get("textual_inversion")
    embeddings = {record["label"]: TrainedEmbedding(record["label"], ti["token"], int(ti["num_vectors"]),
                                                    Path(ti["path"]), ti["sha256"])} if ti else None
    backend = StableDiffusionBackend(params, None, torch.device(device), record["generator"], classes=[record["label"]],
                                     embeddings=embeddings)
    draw = ImagePrompt(record["prompt"], record["negative_prompt"],
                       to_compel(record["prompt"]), to_compel(record["negative_prompt"]))
    job = Job(record["label"], 0, int(record.get("index", 0)), int(record["seed"]),
              **({k: record[k] for k in ("source_path", "source_sha256", "variant", "strength")} if variant else {}))
    return backend.generate([job], [draw])[0]


def wildcards_sha256(root: Path) -> str:
    """One hash over every wildcard file (their lines decide the prompts)."""
    h = hashlib.sha256()
    if root.is_dir():
        for p in sorted(root.rglob("*.txt")):
            h.update(f"{p.relative_to(root).as_posix()}:{file_sha256(p)}\n".encode())
    return h.hexdigest()


def _read_classes(model_dir: Path) -> list[str]:
    """The class list the train_generator stage recorded (it does not train for SD backends)."""
    path = Path(model_dir) / "generator.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MissingAssetError(f"{path} is missing or unreadable ({exc}): run the train_generator stage") from exc
    classes = info.get("classes")
    if not isinstance(classes, list) or not classes:
        raise DataError(f"{path} has no class list: re-run the train_generator stage")
    return [str(c) for c in classes]


__all__ = ["StableDiffusionBackend", "load_pipeline", "model_kind", "weights_sha256"]
