"""The weight encoder: a LoRA's weights → one unit vector in the text encoder's space.

Each adapted layer becomes a token: a probe vector learned per layer type goes through
the layer's scaled ``B·A`` (computed as ``B (A p)``, never the full delta), a linear map
per layer type brings it to the encoder width, and a learned embedding of the layer's
position (module name) is added. A small transformer encoder reads the tokens (a
padding mask covers LoRAs with fewer layers), mean pooling over the real tokens and a
linear head give the embedding. Works for any rank and any subset of the known layers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tools.autolora.config import EncoderConfig, LayerType
from tools.autolora.errors import AutoLoRAError
from tools.autolora.tokens import LoraLayers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FactorGroup:
    """Layers of one type: ``up [n, out, r]`` and ``down [n, r, in]`` (None: ``up`` holds
    dense deltas ``[n, out, in]``), at token positions ``positions [n]``."""

    type_index: int
    up: Tensor
    down: Tensor | None
    positions: Tensor


@dataclass(frozen=True)
class PreparedLora:
    """A LoRA's layers grouped by the encoder's layer types; ``skipped``: layers of types
    the encoder does not know."""

    source: str
    groups: tuple[FactorGroup, ...]
    slots: Tensor
    skipped: int

    @property
    def length(self) -> int:
        return int(self.slots.shape[0])


def vocabulary(loras: Iterable[LoraLayers]) -> tuple[list[LayerType], list[str]]:
    """The layer types and module names of a set of LoRAs (sorted, deterministic)."""
    types: dict[str, LayerType] = {}
    slots: set[str] = set()
    for lora in loras:
        for layer in lora.layers:
            key = layer.type_key
            types.setdefault(key, LayerType(key=key, in_dim=layer.in_dim, out_dim=layer.out_dim))
            slots.add(layer.name)
    return [types[k] for k in sorted(types)], sorted(slots)


class WeightEncoder(nn.Module):
    """LoRA weights → unit embedding of width ``config.embed_dim`` (see the module doc)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if not config.layer_types:
            raise AutoLoRAError("the encoder config has no layer types: build it from LoRAs")
        self.config = config
        self.type_index = {t.key: i for i, t in enumerate(config.layer_types)}
        self.slot_index = {name: i + 1 for i, name in enumerate(config.slots)}  # 0: unknown
        self.probes = nn.ParameterList(
            nn.Parameter(torch.randn(t.in_dim) / math.sqrt(t.in_dim)) for t in config.layer_types
        )
        self.project = nn.ModuleList(
            nn.Linear(t.out_dim, config.d_model) for t in config.layer_types
        )
        self.token_norm = nn.LayerNorm(config.d_model)
        self.slot_embedding = nn.Embedding(len(config.slots) + 1, config.d_model)
        nn.init.normal_(self.slot_embedding.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.heads,
            dim_feedforward=config.ff_mult * config.d_model,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, config.layers, norm=nn.LayerNorm(config.d_model), enable_nested_tensor=False
        )
        self.head = nn.Linear(config.d_model, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))

    def prepare(self, lora: LoraLayers) -> PreparedLora:
        """Group ``lora``'s layers by type (ranks zero-padded within a group).

        Raises when no layer has a known type; layers of unknown types are skipped.
        """
        by_type: dict[tuple[int, bool], list[tuple[int, object]]] = {}
        slots: list[int] = []
        skipped = 0
        for layer in lora.layers:
            index = self.type_index.get(layer.type_key)
            if index is None:
                skipped += 1
                continue
            by_type.setdefault((index, layer.down is None), []).append((len(slots), layer))
            slots.append(self.slot_index.get(layer.name, 0))
        if not slots:
            shown = ", ".join(sorted({f.type_key for f in lora.layers})[:4])
            raise AutoLoRAError(
                f"{lora.source or 'LoRA'}: none of its {len(lora.layers)} layers has a type the "
                f"encoder was trained on (got {shown}); expected a LoRA of the architecture it "
                "was trained for. Fix: retrain with `diffgraph train-autolora encoder` on "
                "LoRAs of this architecture"
            )
        if skipped:
            logger.debug("%s: %d layer(s) of unknown types skipped", lora.source, skipped)
        groups = []
        for (index, dense), items in sorted(by_type.items()):
            positions = torch.tensor([pos for pos, _ in items])
            if dense:
                up = torch.stack([layer.up for _, layer in items])
                groups.append(FactorGroup(index, up, None, positions))
                continue
            rank = max(layer.up.shape[1] for _, layer in items)
            ups = [_pad(layer.up, 1, rank) for _, layer in items]
            downs = [_pad(layer.down, 0, rank) for _, layer in items]
            groups.append(FactorGroup(index, torch.stack(ups), torch.stack(downs), positions))
        return PreparedLora(lora.source, tuple(groups), torch.tensor(slots), skipped)

    def forward(self, batch: Sequence[PreparedLora]) -> Tensor:
        """Unit embeddings ``[len(batch), embed_dim]``."""
        device = self.head.weight.device
        length = max(p.length for p in batch)
        d = self.config.d_model
        tokens, positions = [], []
        for type_index, up, down, flat in _collate(batch, length):
            probe = self.probes[type_index]
            up = up.to(device)
            if down is None:
                raw = up @ probe
            else:
                raw = torch.einsum("nor,nr->no", up, down.to(device) @ probe)
            tokens.append(self.project[type_index](raw))
            positions.append(flat.to(device))
        flat_tokens = torch.zeros(len(batch) * length, d, device=device).index_copy(
            0, torch.cat(positions), torch.cat(tokens)
        )
        slots = torch.stack([_pad(p.slots, 0, length) for p in batch]).to(device)
        lengths = torch.tensor([p.length for p in batch], device=device)
        valid = torch.arange(length, device=device)[None] < lengths[:, None]
        x = self.token_norm(flat_tokens.view(len(batch), length, d)) + self.slot_embedding(slots)
        x = self.transformer(x, src_key_padding_mask=~valid)
        pooled = (x * valid[..., None]).sum(1) / lengths[:, None]
        return nn.functional.normalize(self.head(pooled), dim=-1)

    @torch.no_grad()
    def embed(self, loras: Sequence[LoraLayers], batch_size: int = 16) -> Tensor:
        """Unit embeddings of ``loras`` (evaluation mode, no gradients), on the CPU."""
        was_training = self.training
        self.eval()
        try:
            out = [
                self([self.prepare(lora) for lora in loras[i : i + batch_size]]).cpu()
                for i in range(0, len(loras), batch_size)
            ]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.config.embed_dim)


def _pad(tensor: Tensor, dim: int, size: int) -> Tensor:
    """``tensor`` zero-padded at the end of ``dim`` to ``size``."""
    missing = size - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim) + [0, missing]
    return nn.functional.pad(tensor, pad)


def _collate(batch: Sequence[PreparedLora], length: int):
    """Per (type, dense) group of the batch: ``(type, up, down, flat token positions)``."""
    merged: dict[tuple[int, bool], list[tuple[int, FactorGroup]]] = {}
    for row, prepared in enumerate(batch):
        for group in prepared.groups:
            merged.setdefault((group.type_index, group.down is None), []).append((row, group))
    for (type_index, dense), items in sorted(merged.items()):
        flat = torch.cat([g.positions + row * length for row, g in items])
        if dense:
            yield type_index, torch.cat([g.up for _, g in items]), None, flat
            continue
        rank = max(g.up.shape[2] for _, g in items)
        up = torch.cat([_pad(g.up, 2, rank) for _, g in items])
        down = torch.cat([_pad(g.down, 1, rank) for _, g in items])
        yield type_index, up, down, flat
