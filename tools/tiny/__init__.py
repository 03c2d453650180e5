"""Tiny backends of the real architectures for tests and the demo (random weights).

Everything here is demo material: images from these models mean nothing, and files
written here carry ``diffgraph_demo`` metadata saying so.
"""

from tools.tiny.clip import build_tiny_clip, save_tiny_clip, save_tiny_scorer_weights
from tools.tiny.experts import make_tiny_checkpoint, make_tiny_lora
from tools.tiny.sd15 import TinySD15Files, build_tiny_sd15, save_tiny_sd15
from tools.tiny.tokenizer import build_tiny_tokenizer

__all__ = [
    "TinySD15Files",
    "build_tiny_clip",
    "build_tiny_sd15",
    "build_tiny_tokenizer",
    "make_tiny_checkpoint",
    "make_tiny_lora",
    "save_tiny_clip",
    "save_tiny_scorer_weights",
    "save_tiny_sd15",
]
