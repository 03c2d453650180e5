"""Diffusion training losses of the base families (pure functions of tensors).

SD 1.5 / SDXL: the UNet predicts the noise (``epsilon``), the velocity
(``v_prediction``) or the clean sample, as the scheduler's ``prediction_type`` says.
FLUX.1: rectified flow, ``x_σ = (1 - σ) x0 + σ ε`` and the transformer predicts the
velocity ``ε - x0``.
"""

from __future__ import annotations

from torch import Tensor


def noise_prediction_target(scheduler, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
    """What the UNet should predict for ``scheduler.add_noise(latents, noise, timesteps)``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"unknown prediction_type {kind!r}: expected epsilon, v_prediction or sample")


def mse(prediction: Tensor, target: Tensor, weighting: Tensor | None = None) -> Tensor:
    """Mean squared error in float32, optionally weighted per sample (``[B]``)."""
    err = (prediction.float() - target.float()) ** 2
    if weighting is None:
        return err.mean()
    per_sample = err.reshape(err.shape[0], -1).mean(1)
    return (weighting.float() * per_sample).mean()


def flow_matching_inputs(latents: Tensor, noise: Tensor, sigmas: Tensor) -> tuple[Tensor, Tensor]:
    """The noisy input ``(1 - σ) x0 + σ ε`` and the velocity target ``ε - x0``.

    ``sigmas`` has one value per sample in [0, 1].
    """
    s = sigmas.reshape(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
    return (1 - s) * latents + s * noise, noise - latents


def flow_matching_loss(
    prediction: Tensor,
    latents: Tensor,
    noise: Tensor,
    sigmas: Tensor,
    weighting: Tensor | None = None,
) -> Tensor:
    """FLUX.1's flow-matching loss of a velocity ``prediction`` at noise levels ``sigmas``."""
    _, target = flow_matching_inputs(latents, noise, sigmas)
    return mse(prediction, target, weighting)
