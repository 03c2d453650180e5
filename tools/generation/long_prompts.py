"""Prompts longer than CLIP's 77 tokens, encoded the way A1111 does it (SD 1.5).

The prompt's tokens are cut into windows of 75; each window gets its own start and end
tokens, is padded to 77 and encoded alone, and the hidden states of the windows are
concatenated along the sequence. Cross-attention takes any sequence length, so nothing
of the prompt is dropped. A prompt and the negative prompt are padded with empty windows to
the number either needs; prompts that need different numbers are generated in separate
pipeline calls (:func:`group_by_windows`), so a prompt's image never depends on the prompts
it was batched with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

WINDOW = 75  # tokens per window, start and end tokens excluded


def token_windows(tokenizer, text: str) -> list[list[int]]:
    """``text``'s token ids (no start/end tokens) cut into windows of :data:`WINDOW`."""
    ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return [ids[i : i + WINDOW] for i in range(0, len(ids), WINDOW)] or [[]]


def needs_windows(tokenizer, texts: Sequence[str]) -> bool:
    """True when some text is longer than one window (the pipeline would truncate it)."""
    return any(len(token_windows(tokenizer, t)) > 1 for t in texts)


def group_by_windows(tokenizer, prompts: Sequence[str], negative: str) -> list[list[int]]:
    """Indices of ``prompts`` grouped by the windows each needs with ``negative`` (the
    number it is encoded with alone), in order of first appearance."""
    floor = len(token_windows(tokenizer, negative))
    groups: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(max(floor, len(token_windows(tokenizer, prompt))), []).append(i)
    return list(groups.values())


def _window_ids(tokenizer, window: list[int]) -> list[int]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [tokenizer.bos_token_id, *window, tokenizer.eos_token_id]
    return ids + [pad] * (WINDOW + 2 - len(ids))


@torch.no_grad()
def encode_windows(
    tokenizer, text_encoder, texts: Sequence[str], windows: int, device
) -> torch.Tensor:
    """Hidden states ``[len(texts), windows * 77, dim]`` of the texts, window by window."""
    rows = []
    for text in texts:
        chunks = token_windows(tokenizer, text)
        chunks += [[]] * (windows - len(chunks))
        ids = torch.tensor([_window_ids(tokenizer, c) for c in chunks], device=device)
        hidden = text_encoder(ids)[0]  # [windows, 77, dim], as the pipeline encodes one
        rows.append(hidden.reshape(1, -1, hidden.shape[-1]))
    return torch.cat(rows)


def long_prompt_embeds(
    pipe, prompts: Sequence[str], negative: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompt_embeds`` and ``negative_prompt_embeds`` for an SD 1.5 pipeline call."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    windows = max(len(token_windows(tokenizer, t)) for t in [*prompts, *negative])
    device = encoder.device
    return (
        encode_windows(tokenizer, encoder, prompts, windows, device),
        encode_windows(tokenizer, encoder, negative, windows, device),
    )
