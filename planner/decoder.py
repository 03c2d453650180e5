"""The Beta decoder: an FFN on ``[h_p, h_i]`` gives ``a_i, b_i``; ``α = 1 + e^a, β = 1 + e^b``."""

from __future__ import annotations

import torch
from torch import nn


class BetaDecoder(nn.Module):
    """Uni-modal Beta parameters (α, β > 1) for each expert given the prompt's latent.

    ``a`` and ``b`` are squashed softly into ``±max_log`` (``max_log · tanh(x / max_log)``)
    before the exponential, so α and β stay finite and above 1 for any input while the
    gradient never vanishes (a hard clamp would make saturation absorbing).
    """

    def __init__(self, latent_dim: int, hidden_dim: int, max_log: float = 10.0) -> None:
        super().__init__()
        self.max_log = max_log
        self.ffn = nn.Sequential(
            nn.Linear(2 * latent_dim, hidden_dim), nn.ELU(), nn.Linear(hidden_dim, 2)
        )

    def reset_parameters(self) -> None:
        for layer in self.ffn:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, h_prompt: torch.Tensor, h_expert: torch.Tensor):
        raw = self.ffn(torch.cat([h_prompt, h_expert], dim=-1))
        a, b = (self.max_log * torch.tanh(raw / self.max_log)).unbind(-1)
        return 1.0 + a.exp(), 1.0 + b.exp()
