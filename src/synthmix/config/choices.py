"""The names params.yaml may choose from where an implementation registry stands behind them.

The implementations import heavy code (diffusers samplers, segmentation networks), so the schema
takes only the names from here, and each registry checks at import that it implements exactly
these: :mod:`synthmix.generators.base` (backends), :mod:`synthmix.generators.schedulers`
(samplers), :mod:`synthmix.segmentation.models` (networks). A stage then depends on a network's
code only when it builds one.
"""

# generate.backend
BACKENDS: dict[str, str] = {
    "ddpm": "the class-conditional DDPM trained by the train_generator stage (offline default)",
    "sd": "Stable Diffusion 1.x / 2.x (diffusers), weights from generate.sd.model",
    "sdxl": "Stable Diffusion XL (diffusers), optionally with a refiner",
}

# generate.sd.scheduler
SCHEDULERS: tuple[str, ...] = ("dpmpp_2m_karras", "euler_a", "ddim")

# seg_train.models / seg_filter.model: the source study's real-time networks in plain PyTorch
# (their backbone loads seg_train.backbone_weights) and smp encoder-decoders (seg_train.encoder)
SEG_NATIVE_MODELS: tuple[str, ...] = ("bisenetv2", "ppliteseg_t", "ppliteseg_b")
SEG_SMP_MODELS: tuple[str, ...] = ("linknet", "fpn", "unet", "pan")
SEG_MODELS: tuple[str, ...] = SEG_NATIVE_MODELS + SEG_SMP_MODELS

# diffusers.optimization.get_scheduler names that need no extra arguments (train_lora, ...)
LR_SCHEDULERS: tuple[str, ...] = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
                                  "polynomial")
