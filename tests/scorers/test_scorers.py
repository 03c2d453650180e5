"""Scorers on tiny checkpoints in the published layouts: shapes, determinism, batching."""

from __future__ import annotations

import pytest
import torch

from tools.scorers.base import ClipEmbedder
from tools.scorers.errors import MissingWeightsError, ScorerError
from tools.scorers.load import load_scorers
from tools.scorers.preprocess import clip_preprocess, pad_square_preprocess
from tools.settings import ScorerSettings

PROMPTS = ["a red cat", "a blue dog", "a photo", "a portrait", "the sea"]


def _images(n=5, size=48, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def suite(scorer_settings):
    return load_scorers(scorer_settings)


def test_every_metric_gives_one_score_per_image(suite):
    scores = suite.score(_images(), PROMPTS)
    assert set(scores) == {"clip_score", "aesthetic", "image_reward", "hps_v21", "pick_score"}
    for name, value in scores.items():
        assert value.shape == (5,), name
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
    assert (scores["clip_score"] >= 0).all()
    assert suite.demo is True  # tiny CLIP folder carries the demo marker


def test_scores_are_deterministic_and_independent_of_batching(suite, scorer_settings):
    images = _images()
    first = suite.score(images, PROMPTS)
    again = suite.score(images, PROMPTS)
    singles = load_scorers(scorer_settings.model_copy(update={"batch_size": 1}))
    one_by_one = singles.score(images, PROMPTS)
    for name in first:
        assert torch.equal(first[name], again[name]), name
        torch.testing.assert_close(one_by_one[name], first[name], atol=1e-5, rtol=1e-5)


def test_prompt_count_must_match(suite):
    with pytest.raises(ValueError, match="5 images but 2 prompts"):
        suite.score(_images(), PROMPTS[:2])


def test_hps_reads_open_clip_weights_exactly(scorer_settings, tiny_clip):
    model, tokenizer = tiny_clip
    reference = ClipEmbedder(model, tokenizer, preprocess=pad_square_preprocess)
    images = _images()
    with torch.inference_mode():
        want = (reference.images(images) * reference.texts(PROMPTS)).sum(-1)
    got = load_scorers(scorer_settings, ["hps_v21"]).score(images, PROMPTS)["hps_v21"]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_pick_score_is_scaled_cosine(scorer_settings, tiny_clip):
    model, tokenizer = tiny_clip
    reference = ClipEmbedder(model, tokenizer)
    with torch.inference_mode():
        want = model.logit_scale.exp() * (
            reference.images(_images()) * reference.texts(PROMPTS)
        ).sum(-1)
    got = load_scorers(scorer_settings, ["pick_score"]).score(_images(), PROMPTS)["pick_score"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_image_reward_matches_the_reference_formula(scorer_settings, image_reward_parts):
    from tools.scorers.blip import REWARD_MEAN, REWARD_STD

    parts = image_reward_parts
    images = _images()
    with torch.inference_mode():
        embeds = parts["vision"](pixel_values=clip_preprocess(images, 32)).last_hidden_state
        tokens = parts["tokenizer"](
            PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
        )
        hidden = parts["text"](
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            encoder_hidden_states=embeds,
            is_decoder=False,
        ).last_hidden_state
        want = (parts["head"](hidden[:, 0]).squeeze(-1) - REWARD_MEAN) / REWARD_STD
    got = load_scorers(scorer_settings, ["image_reward"]).score(images, PROMPTS)
    torch.testing.assert_close(got["image_reward"], want, atol=1e-5, rtol=0)


def test_preprocess_resizes_short_side_and_centre_crops():
    wide = torch.zeros(1, 3, 20, 40)
    wide[..., 10:30] = 1.0  # the centre half is white
    out = clip_preprocess(wide, 10, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (1, 3, 10, 10)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.ones(1, 3, 8, 8), atol=0.05)


def test_missing_weights_name_metric_file_and_setting(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as caught:
        load_scorers(ScorerSettings(), ["clip_score"])
    message = str(caught.value)
    assert "'clip_score'" in message and "CLIP ViT-L/14" in message
    assert "scorers.clip" in message and "openai/clip-vit-large-patch14" in message
    settings = ScorerSettings(image_reward=tmp_path)
    with pytest.raises(MissingWeightsError, match=r"ImageReward\.safetensors or ImageReward\.pt"):
        load_scorers(settings, ["image_reward"])
    with pytest.raises(ScorerError, match="unknown metric"):
        load_scorers(ScorerSettings(), ["fid"])


def test_weights_are_found_in_the_hf_cache(clip_folder, aesthetic_head_file, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--openai--clip-vit-large-patch14"
    shutil.copytree(clip_folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    settings = ScorerSettings(aesthetic_head=aesthetic_head_file, metrics=["aesthetic"])
    scores = load_scorers(settings).score(_images(2), PROMPTS[:2])
    assert scores["aesthetic"].shape == (2,)


def test_pickled_head_needs_opt_in(scorer_settings, aesthetic_head_file, tmp_path):
    from safetensors.torch import load_file

    from tools.weights.errors import PickleRefusedError

    path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(load_file(str(aesthetic_head_file)), path)
    settings = scorer_settings.model_copy(update={"aesthetic_head": path})
    with pytest.raises(PickleRefusedError):
        load_scorers(settings, ["aesthetic"])
    pickled = load_scorers(settings, ["aesthetic"], allow_pickle=True).score(_images(), PROMPTS)
    safe = load_scorers(scorer_settings, ["aesthetic"]).score(_images(), PROMPTS)
    assert torch.equal(pickled["aesthetic"], safe["aesthetic"])
