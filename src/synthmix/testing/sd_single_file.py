"""Write an SD 1.x diffusers folder as one original-layout (LDM) ``.safetensors`` checkpoint.

Why: other SD tools (A1111, ComfyUI) share models as one file in the original
CompVis/LDM key layout, and ``generate.sd.model`` accepts such files through diffusers'
``from_single_file``. Offline there is no such file to test that path with, so this module
writes one from a diffusers folder (the inverse of diffusers' LDM -> diffusers conversion,
after diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``, generalised
from SD 1.x's fixed 4 blocks x 2 layers to any block count and ``layers_per_block``). It is
also useful on its own: ``export_single_file("models/my-sd15", "my-sd15.safetensors")``.
Only SD 1.x (one CLIP ViT-L-style text encoder) is supported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from synthmix.core.errors import DataError


def _unet_map(cfg: dict) -> list[tuple[str, str]]:
    """(LDM prefix, diffusers prefix) pairs for a UNet2DConditionModel config."""
    n = len(cfg["block_out_channels"])
    layers = cfg["layers_per_block"]
    down_attn = ["CrossAttn" in t for t in cfg["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in cfg["up_block_types"]]
    pairs = []
    for i in range(n):
        for j in range(layers):
            pairs.append((f"input_blocks.{(layers + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down_attn[i]:
                pairs.append((f"input_blocks.{(layers + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < n - 1:
            pairs.append((f"input_blocks.{(layers + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
        for j in range(layers + 1):
            pairs.append((f"output_blocks.{(layers + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up_attn[i]:
                pairs.append((f"output_blocks.{(layers + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n - 1:
            pairs.append((f"output_blocks.{(layers + 1) * i + layers}.{2 if up_attn[i] else 1}.",
                          f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    pairs += [(f"middle_block.{2 * j}.", f"mid_block.resnets.{j}.") for j in range(2)]
    return pairs


_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
}
_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def convert_unet(sd: dict, cfg: dict) -> dict:
    pairs = _unet_map(cfg)
    out = {}
    for k, v in sd.items():
        new = k
        for hf, ldm in _UNET_FIXED.items():
            if new.startswith(hf):
                new = ldm + new[len(hf):]
        if "resnets" in k:
            for hf, ldm in _RESNET:
                new = new.replace(hf, ldm)
        for ldm, hf in pairs:
            if new.startswith(hf):
                new = ldm + new[len(hf):]
                break
        out["model.diffusion_model." + new] = v
    return out


def convert_vae(sd: dict, cfg: dict) -> dict:
    n = len(cfg["block_out_channels"])
    layers = cfg["layers_per_block"]
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(n):
        pairs += [(f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.") for j in range(layers)]
        pairs += [(f"decoder.up.{n - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.") for j in range(layers + 1)]
        if i < n - 1:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{n - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
    pairs += [(f"mid.block_{i + 1}.", f"mid_block.resnets.{i}.") for i in range(2)]
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    out = {}
    for k, v in sd.items():
        new = k
        for ldm, hf in pairs:
            new = new.replace(hf, ldm)
        if "attn_1" in new:
            for ldm, hf in attn:
                new = new.replace(hf, ldm)
            if v.ndim == 2:  # diffusers linear -> LDM 1x1 convolution
                v = v.reshape(*v.shape, 1, 1)
        out["first_stage_model." + new] = v
    return out


def export_single_file(folder: str | os.PathLike, out_path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write the SD 1.x pipeline folder ``folder`` as one LDM-layout ``.safetensors`` file."""
    from safetensors.torch import load_file, save_file

    folder, out_path = Path(folder), Path(out_path)
    te_cfg = json.loads((folder / "text_encoder" / "config.json").read_text())
    if (folder / "text_encoder_2").exists() or te_cfg.get("model_type") != "clip_text_model":
        raise DataError(f"{folder}: only SD 1.x pipelines (one CLIP text encoder) can be exported to a single file")

    def load(sub: str, name: str) -> dict:
        path = folder / sub / name
        if not path.is_file():
            raise DataError(f"{path} not found: save the pipeline with safe_serialization=True")
        return load_file(path)

    unet_cfg = json.loads((folder / "unet" / "config.json").read_text())
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    state = convert_unet(load("unet", "diffusion_pytorch_model.safetensors"), unet_cfg)
    state.update(convert_vae(load("vae", "diffusion_pytorch_model.safetensors"), vae_cfg))
    text = load("text_encoder", "model.safetensors")  # transformers >= 5 saves without "text_model."
    state.update({"cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
                  for k, v in text.items()})
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out_path)
    return out_path
