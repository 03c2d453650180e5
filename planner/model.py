"""The Merging Planner network: input features → VGAE encoder → Beta decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import VGAE
from torch_geometric.utils import scatter

from planner.activation import edge_types
from planner.config import PlannerConfig
from planner.decoder import BetaDecoder
from planner.encoder import DualEncoder
from planner.features import NODE_ORDER, InputFeatures, edge_dim

# Samples are kept this far inside (0, 1) so that log P(w) stays finite in float32.
SAMPLE_EPS = 1e-6


@dataclass
class BetaPlan:
    """Beta parameters of every expert node (node order) and the graph each belongs to."""

    alpha: torch.Tensor
    beta: torch.Tensor
    graph: torch.Tensor
    num_graphs: int

    @property
    def distribution(self) -> torch.distributions.Beta:
        return torch.distributions.Beta(self.alpha, self.beta)

    def mean(self) -> torch.Tensor:
        """The inference coefficients ``α / (α + β)``."""
        return self.alpha / (self.alpha + self.beta)

    def sample(self, num_samples: int = 1) -> torch.Tensor:
        """``(num_samples, experts)`` training coefficients ``w ~ Beta(α, β)``.

        Drawn from torch's global RNG, without gradient (REINFORCE differentiates
        ``log_prob`` instead).
        """
        w = self.distribution.sample((num_samples,))
        return w.clamp(SAMPLE_EPS, 1.0 - SAMPLE_EPS)

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """``log P(w)`` per sample and graph: the sum of the experts' Beta log densities."""
        per_expert = self.distribution.log_prob(w)
        return scatter(per_expert, self.graph, dim=-1, dim_size=self.num_graphs, reduce="sum")


class MergingPlanner(nn.Module):
    """``VGAE(encoder=DualEncoder, decoder=BetaDecoder)`` behind the input ablations.

    In training mode the latent H is sampled with the reparameterisation trick; in eval
    mode it is μ. ``kl_loss()`` is the VGAE KL term of the last forward pass.
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.config = config
        self.features = InputFeatures(config)
        encoder = DualEncoder(
            config.input_dim,
            config.hidden_dim,
            config.latent_dim,
            edge_dim(len(config.metrics)),
            config.heads,
            len(edge_types()),
        )
        decoder = BetaDecoder(
            config.latent_dim, config.decoder_hidden, config.max_log_concentration
        )
        self.vgae = VGAE(encoder=encoder, decoder=decoder)

    def forward(self, data: HeteroData) -> BetaPlan:
        inputs = self.features(data)
        z = self.vgae.encode(inputs.x, inputs.edge_index, inputs.edge_attr, inputs.edge_type)
        z_expert, _, z_prompt = z.split([inputs.counts[node] for node in NODE_ORDER])
        graph = _batch(data["expert"])
        alpha, beta = self.vgae.decoder(z_prompt[graph], z_expert)
        return BetaPlan(alpha, beta, graph, inputs.counts["prompt"])

    def kl_loss(self) -> torch.Tensor:
        return self.vgae.kl_loss()


def _batch(store) -> torch.Tensor:
    """The graph index of each node of a node store (zeros for a single graph)."""
    batch = getattr(store, "batch", None)
    return batch if batch is not None else torch.zeros(store.num_nodes, dtype=torch.long)
