"""A CLIP BPE tokenizer written in code: no vocabulary download.

The vocabulary is the 256 byte symbols of byte-level BPE (alone and word-final), a few
hundred merges that spell common prompt words whole, and CLIP's two special tokens, so
prompts tokenize into meaningful pieces the way the real CLIP tokenizer does.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_LENGTH = 77

# Words spelled as single tokens; everything else falls back to byte pieces.
_WORD_LIST = """
a an the of in on at with and by for to from photo portrait painting drawing illustration
render art style cat dog woman man girl boy face city forest mountain sea sky night sunset
landscape castle car flower tree house street robot dragon anime realistic cinematic
detailed lighting colorful dark red blue green gold white black oil watercolor digital
fantasy cyberpunk steampunk highly masterpiece best quality trending artstation concept
octane unreal engine 4k 8k sharp focus
"""
WORDS = tuple(_WORD_LIST.split())


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-symbol table: printable bytes map to themselves."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return dict(sorted(table.items()))


@functools.cache
def tiny_vocab(words: tuple[str, ...] = WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary (token → id) and the BPE merges, in priority order.

    The merges are learned by the ``tokenizers`` BPE trainer on ``words`` (default
    :data:`WORDS`), so each of those words encodes as one token; the result is deterministic.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    symbols = list(bytes_to_unicode().values())
    learner = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,
        initial_alphabet=symbols,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    learner.train_from_iterator(words, trainer=trainer)
    merges = [tuple(pair) for pair in json.loads(learner.to_str())["model"]["merges"]]
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def build_tiny_tokenizer(words: tuple[str, ...] = WORDS):
    """A ``transformers.CLIPTokenizer`` over :func:`tiny_vocab` (77 tokens, like SD 1.5)."""
    from transformers import CLIPTokenizer

    vocab, merges = tiny_vocab(words)
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=MAX_LENGTH)


def write_vocab_files(directory: Path, words: tuple[str, ...] = WORDS) -> None:
    """Also write ``vocab.json`` / ``merges.txt`` (the slow-tokenizer file pair)."""
    vocab, merges = tiny_vocab(words)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
