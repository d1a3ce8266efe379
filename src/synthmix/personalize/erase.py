"""Model-centric leakage control: erase each class concept from the UNet with ESD.

Erased Stable Diffusion (Gandikota et al., ICCV 2023), as DA-Fusion used it to show that its
gains do not come from what SD already knew about the classes. A frozen copy of the UNet
gives, at a latent ``x_t`` made by the model itself from the concept prompt, the unconditional
and conditional noise predictions ``e0`` and ``ep``; the trained UNet's conditional prediction is
pulled to ``e0 - eta * (ep - e0)`` (negative guidance ``eta``), so conditioning on the concept
steers away from it:

    loss = || eps_theta(x_t, c, t) - (eps*(x_t, t) - eta * (eps*(x_t, c, t) - eps*(x_t, t))) ||^2

``x_t``: a DDIM run of ``ddim_steps`` from seeded noise, stopped after a random number of steps,
with classifier-free guidance ``start_guidance`` (ESD's ``quick_sample_till_t``). Which weights
train: ``full`` (every UNet weight, DA-Fusion's choice), ``xattn`` (cross-attention only, ESD-x)
or ``noxattn`` (all but cross-attention, ESD-u). Every class is erased in one run, iterations
cycling through them. The erased UNet is saved as a diffusers ``UNet2DConditionModel`` folder
(safetensors); ``generate.sd.erased`` makes generation load it in place of the model's UNet.
"""

from __future__ import annotations

import copy
import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from synthmix.config import Params
from synthmix.core.atomic import building_dir, write_json
from synthmix.core.errors import DataError, ParamsError
from synthmix.core.paths import Input, Output
from synthmix.core.seeding import derive_seed
from synthmix.generators.erased import ERASE_FORMAT, INDEX, UNET_DIR

log = logging.getLogger(__name__)



def trainable(name: str, method: str) -> bool:
    """Whether UNet parameter ``name`` trains under ESD ``method``."""
    cross = "attn2" in name
    return method == "full" or (method == "xattn" and cross) or (method == "noxattn" and not cross)


def esd_target(frozen, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
               eta: float) -> torch.Tensor:
    """``e0 - eta * (ep - e0)`` from the frozen UNet (no gradient)."""
    with torch.no_grad():
        e0 = frozen(x_t, t, encoder_hidden_states=uncond).sample
        ep = frozen(x_t, t, encoder_hidden_states=cond).sample
    return e0 - eta * (ep - e0)


def esd_loss(unet, frozen, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
             eta: float) -> torch.Tensor:
    """The ESD objective at one latent (see the module docstring)."""
    return F.mse_loss(unet(x_t, t, encoder_hidden_states=cond).sample.float(),
                      esd_target(frozen, x_t, t, cond, uncond, eta).float())


@torch.no_grad()
def sample_until(unet, scheduler, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 guidance: float, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the first ``stop`` steps of ``scheduler``'s timesteps (set by the caller) with
    classifier-free guidance; return (x_t, the next timestep t)."""
    x = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps[:stop]:
        inp = scheduler.scale_model_input(torch.cat([x, x]), t)
        e_u, e_c = unet(inp, t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
        x = scheduler.step(e_u + guidance * (e_c - e_u), t, x).prev_sample
    return x, scheduler.timesteps[stop]


def erase_concepts(unet, encode, concepts: dict[str, str], p, resolution: int, scheduler_config,
                   device: torch.device, show_progress: bool = True) -> dict:
    """Fine-tune ``unet`` in place with ESD to forget every concept text of ``concepts``
    (class -> text); ``encode(texts)`` gives text-encoder hidden states. Returns run statistics."""
    from diffusers import DDIMScheduler
    from tqdm.auto import tqdm

    if not concepts:
        raise DataError("nothing to erase: no classes")
    frozen = copy.deepcopy(unet).requires_grad_(False).eval()
    names = [n for n, _ in unet.named_parameters()]
    for name, param in unet.named_parameters():
        param.requires_grad_(trainable(name, p.method))
    params = [q for q in unet.parameters() if q.requires_grad]
    if not params:
        raise ParamsError(f"erase.method = {p.method}: no UNet weight matches (attn2 = cross-attention)")
    unet.train()
    opt = torch.optim.Adam(params, lr=p.lr)
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(p.ddim_steps, device=device)
    with torch.no_grad():
        uncond = encode([""])
        conds = {c: encode([text]) for c, text in concepts.items()}
    order = list(concepts)
    shape = (1, unet.config.in_channels, resolution // 8, resolution // 8)
    losses = []
    for it in tqdm(range(p.iterations), desc="erase (ESD)", disable=not show_progress):
        label = order[it % len(order)]
        g = torch.Generator().manual_seed(derive_seed("erase", p.seed, it))
        stop = int(torch.randint(0, p.ddim_steps - 1, (1,), generator=g))
        latents = torch.randn(shape, generator=g).to(device)
        unet.eval()
        x_t, t = sample_until(unet, scheduler, latents, conds[label], uncond, p.start_guidance, stop)
        unet.train()
        loss = esd_loss(unet, frozen, x_t, t.reshape(1).to(device), conds[label], uncond, p.negative_guidance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    unet.eval().requires_grad_(False)
    return {"iterations": p.iterations, "trained_tensors": len(params), "unet_tensors": len(names),
            "final_loss": losses[-1], "mean_loss_first_10pct": sum(losses[: max(1, len(losses) // 10)]) /
            max(1, len(losses) // 10), "mean_loss_last_10pct": sum(losses[-max(1, len(losses) // 10):]) /
            max(1, len(losses) // 10)}


def concept_texts(classes: Sequence[str], template: str, class_names: dict[str, str]) -> dict[str, str]:
    """The text erased per class: ``template`` with {class} = the class text (_ as spaces)."""
    return {c: template.replace("{class}", class_names.get(c, c.replace("_", " "))) for c in classes}


def erase_stage(params: Params, *, classes: Input, out: Output, metrics: Output) -> None:
    """Stage erase: ESD fine-tuning of generate.sd.model's UNet so that no class concept is left
    in it (models/erased: unet/ + index.json), used by generate and train_textual_inversion when
    generate.sd.erased is true. Backend ddpm, or erased false: nothing is trained, index.json
    says so."""
    from synthmix.core.device import pick_device
    from synthmix.data.classes import read_classes
    from synthmix.personalize.lora import skip_reason
    from synthmix.personalize.training import encode_text, load_sd_model, tokenize

    reason = skip_reason(params, "erased")
    if reason is None and params.generate.backend != "sd":
        reason = "generate.backend = sdxl: erase supports SD 1.x/2.x UNets"
    if reason:
        with building_dir(out) as tmp:
            write_json(tmp / INDEX, {"format": ERASE_FORMAT, "backend": params.generate.backend, "erased": False,
                                     "reason": reason})
        write_json(metrics, {"backend": params.generate.backend, "erased": 0, "skipped": reason})
        print(f"erase: nothing to erase ({reason})")
        return
    p = params.erase
    device = pick_device(params.device)
    model = load_sd_model(params, device, p.resolution, "no")
    class_list = read_classes(classes)
    concepts = concept_texts(class_list, p.concept_template, params.generate.prompt.class_names)
    encode = lambda texts: encode_text(model, tokenize(model, texts))[0]  # noqa: E731
    stats = erase_concepts(model.pipe.unet, encode, concepts, p, model.resolution, model.pipe.scheduler.config,
                           device)
    with building_dir(out) as tmp:
        model.pipe.unet.save_pretrained(tmp / UNET_DIR, safe_serialization=True)
        write_json(tmp / INDEX, {"format": ERASE_FORMAT, "backend": "sd", "erased": True, "model": model.model,
                                 "model_sha256": model.model_sha256, "concepts": concepts,
                                 "settings": p.model_dump(mode="json")})
    write_json(metrics, {"backend": "sd", "erased": len(concepts), **{k: round(v, 6) if isinstance(v, float) else v
                                                                      for k, v in stats.items()}})
    print(f"erase: {len(concepts)} concepts erased from the UNet in {out}")
