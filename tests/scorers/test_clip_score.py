"""CLIPScore ranks the matching caption first for a CLIP built to see colours."""

from __future__ import annotations

import torch

from tools.scorers.load import load_scorers
from tools.settings import ScorerSettings


def _colour_clip(model, tokenizer):
    """Rewire a tiny CLIP so both towers embed "how red vs how blue" in dims 0 and 1.

    Every layer attends uniformly (q = k = 0) and passes values through (v = out = I, MLP
    off); the text embeds only the words red / blue, the image its mean red / blue channel;
    the projections read dims 0 and 1.
    """
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        for tower in (model.text_model, model.vision_model):
            for layer in tower.encoder.layers:
                attention = layer.self_attn
                for linear in (attention.q_proj, attention.k_proj, layer.mlp.fc2):
                    linear.weight.zero_()
                    linear.bias.zero_()
                for linear in (attention.v_proj, attention.out_proj):
                    linear.weight.copy_(torch.eye(linear.weight.shape[0]))
                    linear.bias.zero_()
        text = model.text_model.embeddings
        text.token_embedding.weight.zero_()
        text.token_embedding.weight[vocab["red</w>"], 0] = 10.0
        text.token_embedding.weight[vocab["blue</w>"], 1] = 10.0
        text.position_embedding.weight.zero_()
        vision = model.vision_model.embeddings
        vision.class_embedding.zero_()
        vision.position_embedding.weight.zero_()
        patch = vision.patch_embedding.weight
        patch.zero_()
        patch[0, 0] = 1.0 / patch[0, 0].numel()  # dim 0: mean red
        patch[1, 2] = 1.0 / patch[1, 2].numel()  # dim 1: mean blue
        for projection in (model.text_projection, model.visual_projection):
            projection.weight.zero_()
            projection.weight[0, 0] = projection.weight[1, 1] = 1.0
    return model


def test_clip_score_ranks_the_matching_caption_first(tmp_path):
    from tools.tiny.clip import build_tiny_clip, save_tiny_clip

    model, tokenizer = build_tiny_clip(seed=3)
    folder = save_tiny_clip(_colour_clip(model, tokenizer), tokenizer, tmp_path / "clip")
    scorer = load_scorers(ScorerSettings(clip=folder), ["clip_score"])
    red = torch.zeros(1, 3, 40, 40)
    red[:, 0] = 1.0
    blue = torch.zeros(1, 3, 40, 40)
    blue[:, 2] = 1.0
    images = torch.cat([red, red, blue, blue])
    prompts = ["a red cat", "a blue cat", "a red cat", "a blue cat"]
    score = scorer.score(images, prompts)["clip_score"]
    assert score[0] > score[1]  # red image: "red" caption wins
    assert score[3] > score[2]  # blue image: "blue" caption wins
    assert score[0] > 50 and score[3] > 50
