"""Prompts longer than 77 tokens are encoded window by window, nothing dropped (A1111)."""

from __future__ import annotations

import torch

from tools.generation.generator import Generator
from tools.generation.long_prompts import WINDOW, encode_windows, token_windows
from tools.generation.request import GenerationRequest

HEAD = "a red cat, blue dog, green tree, " * 9  # 81 tokens with the tiny tokenizer


def test_one_window_equals_the_pipelines_own_encoding(tiny_sd15):
    mine = encode_windows(tiny_sd15.tokenizer, tiny_sd15.text_encoder, ["a red cat"], 1, "cpu")
    theirs = tiny_sd15.encode_prompt("a red cat", "cpu", 1, False)[0]
    assert torch.equal(mine, theirs)


def test_long_prompts_are_cut_into_independent_windows(tiny_sd15):
    tok, enc = tiny_sd15.tokenizer, tiny_sd15.text_encoder
    windows = token_windows(tok, HEAD)
    assert [len(w) for w in windows] == [WINDOW, len(windows[1])] and len(windows) == 2
    embeds = encode_windows(tok, enc, [HEAD, "a cat"], 2, "cpu")
    assert embeds.shape == (2, 2 * 77, enc.config.hidden_size)
    first = torch.tensor([[tok.bos_token_id, *windows[0], tok.eos_token_id]])
    with torch.no_grad():
        assert torch.equal(embeds[0, :77], enc(first)[0][0])
        empty = enc(torch.tensor([[tok.bos_token_id, tok.eos_token_id] + [tok.pad_token_id] * 75]))
    assert torch.equal(embeds[1, 77:], empty[0][0])  # the short prompt is padded by windows


def test_words_past_77_tokens_change_the_image(tiny_sd15_files, caplog):
    generator = Generator.from_path(tiny_sd15_files.folder)

    def image(tail: str) -> torch.Tensor:
        request = GenerationRequest(prompts=[HEAD + tail], steps=2, width=64, height=64)
        return generator.generate(request).images

    castle, forest = image("castle"), image("forest")
    assert not torch.equal(castle, forest)
    assert torch.equal(castle, image("castle"))
    assert "truncated" not in caplog.text


def test_a_short_prompt_gives_its_own_image_beside_a_long_one(tiny_sd15_files):
    """Batched with a long prompt, a short prompt is encoded as alone (no padding windows)."""
    generator = Generator.from_path(tiny_sd15_files.folder)

    def images(*prompts: str) -> torch.Tensor:
        request = GenerationRequest(prompts=list(prompts), steps=2, width=64, height=64)
        return generator.generate(request).images

    short, long = "a red cat", HEAD + "castle"
    together = images(short, long, "a blue dog")
    torch.testing.assert_close(together[0], images(short)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(together[1], images(long)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(together[2], images("a blue dog")[0], atol=1e-5, rtol=0)


def test_prompts_group_by_the_windows_they_need_with_the_negative(tiny_sd15):
    from tools.generation.long_prompts import group_by_windows

    tok = tiny_sd15.tokenizer
    prompts = ["a cat", HEAD, "a dog", HEAD + HEAD]
    assert group_by_windows(tok, prompts, "") == [[0, 2], [1], [3]]
    assert group_by_windows(tok, prompts, HEAD) == [[0, 1, 2], [3]]  # a long negative lifts all


def test_noise_is_drawn_on_the_cpu_unless_set_otherwise():
    from types import SimpleNamespace

    from tools.settings import Settings

    def on(device: str, setting: str) -> str:
        loaded = SimpleNamespace(pipe=SimpleNamespace(device=torch.device(device)))
        return Generator(loaded, noise_device=setting).noise_device

    assert on("cuda", "cpu") == "cpu" and on("cuda", "pipeline") == "cuda"
    assert on("mps", "pipeline") == "cpu" and on("cpu", "pipeline") == "cpu"
    assert Settings().generation.noise_device == "cpu"
