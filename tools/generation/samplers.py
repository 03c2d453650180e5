"""The A1111 sampler name of a diffusers scheduler (what the pipeline really ran).

A1111 names samplers after k-diffusion / its own implementations; this maps each diffusers
scheduler to the one that runs the same algorithm, with ``Schedule type`` when the
scheduler uses Karras or exponential sigmas. A scheduler with no A1111 counterpart keeps
its diffusers class name, so nothing is claimed that did not run.
"""

from __future__ import annotations

from typing import Any

_BY_CLASS = {
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "FlowMatchEulerDiscreteScheduler": "Euler",
    "HeunDiscreteScheduler": "Heun",
    "LMSDiscreteScheduler": "LMS",
    "KDPM2DiscreteScheduler": "DPM2",
    "KDPM2AncestralDiscreteScheduler": "DPM2 a",
    "DPMSolverSinglestepScheduler": "DPM++ 2S",
    "DPMSolverSDEScheduler": "DPM++ SDE",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "UniPCMultistepScheduler": "UniPC",
    "DEISMultistepScheduler": "DEIS",
    "LCMScheduler": "LCM",
}
_DPM_MULTISTEP = {
    "dpmsolver++": "DPM++ 2M",
    "sde-dpmsolver++": "DPM++ 2M SDE",
    "dpmsolver": "DPM2M",
    "sde-dpmsolver": "DPM2M SDE",
}


def a1111_sampler(scheduler: Any) -> tuple[str, str | None]:
    """``(sampler, schedule type or None)`` of a diffusers scheduler instance."""
    name = type(scheduler).__name__
    config = getattr(scheduler, "config", {}) or {}
    if name == "DPMSolverMultistepScheduler":
        algorithm = config.get("algorithm_type", "dpmsolver++")
        sampler = _DPM_MULTISTEP.get(algorithm, name)
        if config.get("solver_order", 2) == 3 and algorithm == "sde-dpmsolver++":
            sampler = "DPM++ 3M SDE"
    else:
        sampler = _BY_CLASS.get(name, name)
    schedule = None
    if config.get("use_karras_sigmas"):
        schedule = "Karras"
    elif config.get("use_exponential_sigmas"):
        schedule = "Exponential"
    return sampler, schedule
