"""The samplers of the Stable Diffusion backends, by the name params.yaml uses
(``generate.sd.scheduler``; the schema's list is :data:`synthmix.config.choices.SCHEDULERS`,
checked against this registry at import). diffusers is imported only when one is built.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from synthmix.config.choices import SCHEDULERS as SCHEDULER_NAMES


class SchedulerSpec(NamedTuple):
    cls: str  # a diffusers scheduler class
    options: dict[str, Any]  # from_config overrides

    def describe(self) -> str:
        """What manifests record as ``sampler``."""
        if not self.options:
            return self.cls
        return f"{self.cls}({', '.join(f'{k}={v}' for k, v in self.options.items())})"


SCHEDULERS: dict[str, SchedulerSpec] = {
    "dpmpp_2m_karras": SchedulerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}
    ),
    "euler_a": SchedulerSpec("EulerAncestralDiscreteScheduler", {}),
    "ddim": SchedulerSpec("DDIMScheduler", {}),
}

if tuple(SCHEDULERS) != SCHEDULER_NAMES:
    raise ImportError(f"samplers {list(SCHEDULERS)} != the names in config/choices.py {list(SCHEDULER_NAMES)}")


def make_scheduler(name: str, config):
    """The sampler ``name`` built from the model's own scheduler config (keeps its noise schedule)."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}: one of {', '.join(SCHEDULERS)}")
    spec = SCHEDULERS[name]
    return getattr(diffusers, spec.cls).from_config(config, **spec.options)
