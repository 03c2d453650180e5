"""The world VAE's training pieces: the latent standardisation is an exact reparametrisation."""

from __future__ import annotations

import contextlib

import torch

from tools.world.data import BASE_DOMAIN, make_set, to_tensor
from tools.world.models import new_vae
from tools.world.progress import Resume
from tools.world.vae_train import standardise_latents, train_vae


def test_standardised_latents_are_centred_with_unit_spread_and_decode_the_same():
    vae = new_vae(0).eval()
    sample = to_tensor(make_set([BASE_DOMAIN], 64, 3).images)
    with torch.no_grad():
        before = vae.encode(sample).latent_dist
        decoded = vae.decode(before.mean).sample
        standardise_latents(vae, sample)
        after = vae.encode(sample).latent_dist
    assert vae.config.scaling_factor == 1.0
    torch.testing.assert_close(after.mean.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(after.mean.std((0, 2, 3)), torch.ones(4), atol=1e-5, rtol=0)
    with torch.no_grad():  # the same latent decodes to the same image
        torch.testing.assert_close(vae.decode(after.mean).sample, decoded, atol=1e-4, rtol=0)


class Interrupted(Exception):
    pass


def _stop_at(step: int):
    def progress(task: str, done: int, total: int) -> None:
        if done == step:
            raise Interrupted

    return progress


def test_vae_training_resumes_to_the_uninterrupted_result(tmp_path):
    """Latent noise and the fading anchor come from the snapshot's generator and step."""
    whole = train_vae(4, seed=0, resume=Resume(tmp_path / "a", every=100), batch=2, n_images=16)
    cut = Resume(tmp_path / "b", every=1)
    with contextlib.suppress(Interrupted):
        train_vae(4, seed=0, resume=cut, batch=2, n_images=16, progress=_stop_at(3))
    resumed = train_vae(4, seed=0, resume=cut, batch=2, n_images=16)
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
