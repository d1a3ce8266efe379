"""The names of the generator backends: the one list ``generate.backend`` may name.

Kept apart from the factories (:mod:`synthmix.generators.base`, which import each backend on
use) so that the params schema can read the names without making every stage depend on the
backends' code: ``dvc.yaml`` lists a stage's whole import closure, lazy imports included.
``base.py`` registers one factory per name here and checks at import that the two agree.
"""

BACKENDS: dict[str, str] = {
    "ddpm": "the class-conditional DDPM trained by the train_generator stage (offline default)",
    "sd": "Stable Diffusion 1.x / 2.x (diffusers), weights from generate.sd.model",
    "sdxl": "Stable Diffusion XL (diffusers), optionally with a refiner",
}
