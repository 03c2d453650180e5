"""The synthetic world: a graph whose experts have a hidden, known usefulness per prompt.

Expert i's true usefulness for a prompt p is

    u_i(p) = sigmoid(γ · (cos(e_p, f_i) − c) + λ · q_i),   q_i = tanh(√d · ⟨v, f_i⟩ / |f_i|)

a function of the prompt embedding e_p and the expert's feature f_i, with a hidden
direction v (the expert's prompt-independent "quality"). Calibration edges measure it the
way real calibration would: ``synthetic_quality`` is u_i(r) on the reference prompt r and
``synthetic_aesthetic`` is sigmoid(λ q_i), both plus Gaussian noise. The reward of merge
coefficients w is the merged model's usefulness, the merge-weighted mean of u within
checkpoints and within LoRAs (averaged over the kinds present). Its maximiser is known
exactly (:func:`best_coefficients`), so planners can be scored against the optimum.

Everything here is demo data: results carry ``synthetic: true``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from graph.store import GraphArrays
from graph.subgraph import Subgraph, extract_subgraph
from planner.envs.base import Selector, TrainPrompt
from planner.merge import kind_columns, merge_weights

METRICS = ["synthetic_quality", "synthetic_aesthetic"]
DEMO_EXPERTS = Path(__file__).with_name("synthetic_experts.json")


@dataclass(frozen=True)
class HiddenUsefulness:
    """The hidden function ``u_i(p)`` (see the module docstring)."""

    direction: torch.Tensor
    sharpness: float = 12.0
    center: float = 0.25
    quality_weight: float = 1.0

    @classmethod
    def random(cls, dim: int, seed: int, **kwargs) -> HiddenUsefulness:
        v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
        return cls(direction=v / v.norm(), **kwargs)

    def quality(self, expert_x: torch.Tensor) -> torch.Tensor:
        unit = torch.nn.functional.normalize(expert_x.float(), dim=-1)
        return torch.tanh(math.sqrt(unit.shape[-1]) * unit @ self.direction)

    def __call__(self, prompt_x: torch.Tensor, expert_x: torch.Tensor) -> torch.Tensor:
        """``(P, n)`` usefulness of n experts for P prompts (or ``(n,)`` for one prompt)."""
        cos = torch.nn.functional.normalize(prompt_x.float(), dim=-1) @ (
            torch.nn.functional.normalize(expert_x.float(), dim=-1).T
        )
        logits = self.sharpness * (cos - self.center) + self.quality_weight * self.quality(expert_x)
        return torch.sigmoid(logits)


def merged_usefulness(
    usefulness: torch.Tensor, coefficients: torch.Tensor, kinds: Sequence[str]
) -> torch.Tensor:
    """Merge-weighted usefulness, averaged over the kinds present (the synthetic reward).

    ``coefficients`` may carry leading sample dimensions; the result drops the last one.
    """
    weighted = merge_weights(coefficients, kinds) * usefulness
    per_kind = [weighted[..., idx].sum(-1) for idx in kind_columns(kinds).values()]
    return torch.stack(per_kind, dim=-1).mean(-1)


def best_coefficients(usefulness: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
    """The coefficients in [0, 1]^n that maximise :func:`merged_usefulness`.

    Within a kind, ∂r/∂w_i = π_i (u_i − r), so at the optimum w_i is 1 above the achieved
    value and 0 below it: the best choice is "1 for the top k" for some k, found by trying
    every k.
    """
    best = torch.zeros(len(kinds))
    for idx in kind_columns(kinds).values():
        u = usefulness[idx]
        order = torch.argsort(u, descending=True)
        values = []
        for top in range(1, len(idx) + 1):
            w = torch.zeros(len(idx))
            w[order[:top]] = 1.0
            values.append((float((torch.softmax(w, 0) * u).sum()), top))
        top = max(values)[1]
        best[[idx[i] for i in order[:top].tolist()]] = 1.0
    return best


class SyntheticWorld:
    """A calibrated graph (``GraphArrays``) plus the hidden usefulness that generated it."""

    def __init__(self, arrays: GraphArrays, usefulness: HiddenUsefulness) -> None:
        self.arrays = arrays
        self.usefulness = usefulness
        self._kinds = dict(zip(arrays.expert_ids, arrays.expert_kind.tolist(), strict=True))

    @classmethod
    def build(
        cls,
        expert_ids: Sequence[str],
        expert_kinds: Sequence[str],
        expert_x: torch.Tensor,
        ref_x: torch.Tensor,
        seed: int = 0,
        coverage: float = 0.75,
        noise: float = 0.05,
        usefulness: HiddenUsefulness | None = None,
    ) -> SyntheticWorld:
        """Experts calibrated on a random ``coverage`` share of the reference prompts."""
        usefulness = usefulness or HiddenUsefulness.random(expert_x.shape[1], seed)
        arrays = GraphArrays(
            expert_ids=[],
            expert_kind=np.zeros(0, dtype=object),
            expert_base=np.zeros(0, dtype=object),
            expert_status=np.zeros(0, dtype=object),
            expert_x=np.zeros((0, expert_x.shape[1]), np.float32),
            ref_ids=[f"ref-synthetic-{i}" for i in range(len(ref_x))],
            ref_x=ref_x.float().numpy(),
            edge_index=np.zeros((2, 0), np.int64),
            edge_attr=np.zeros((0, len(METRICS)), np.float32),
            metric_names=list(METRICS),
            revision=0,
        )
        world = cls(arrays, usefulness)
        return world.with_experts(expert_ids, expert_kinds, expert_x, seed, coverage, noise)

    @classmethod
    def demo(cls, embedder, ref_prompts: Sequence[str], seed: int = 0) -> SyntheticWorld:
        """The bundled made-up experts (skill descriptions) over the given reference prompts."""
        experts = json.loads(DEMO_EXPERTS.read_text())["experts"]
        expert_x = torch.from_numpy(embedder.embed([e["description"] for e in experts]))
        ref_x = torch.from_numpy(embedder.embed(list(ref_prompts)))
        return cls.build(
            [e["id"] for e in experts], [e["kind"] for e in experts], expert_x, ref_x, seed
        )

    def with_experts(
        self,
        expert_ids: Sequence[str],
        expert_kinds: Sequence[str],
        expert_x: torch.Tensor,
        seed: int = 0,
        coverage: float = 0.75,
        noise: float = 0.05,
    ) -> SyntheticWorld:
        """A new world with these experts added and calibrated (training-free addition)."""
        a = self.arrays
        rng = np.random.default_rng(seed)
        n_old, n_new, n_refs = len(a.expert_ids), len(expert_ids), len(a.ref_ids)
        u_refs = self.usefulness(torch.from_numpy(a.ref_x), expert_x).numpy()  # (refs, new)
        hidden = self.usefulness
        aesthetic = torch.sigmoid(hidden.quality_weight * hidden.quality(expert_x))
        measured = rng.random((n_new, n_refs)) < coverage
        experts, refs = np.nonzero(measured)
        quality = u_refs[refs, experts] + noise * rng.standard_normal(len(experts))
        aesth = aesthetic.numpy()[experts] + noise * rng.standard_normal(len(experts))
        arrays = replace(
            a,
            expert_ids=[*a.expert_ids, *expert_ids],
            expert_kind=np.concatenate([a.expert_kind, np.asarray(expert_kinds, dtype=object)]),
            expert_base=np.concatenate([a.expert_base, np.full(n_new, "sd15", dtype=object)]),
            expert_status=np.concatenate([a.expert_status, np.full(n_new, "active", dtype=object)]),
            expert_x=np.concatenate([a.expert_x, expert_x.float().numpy()]),
            edge_index=np.concatenate([a.edge_index, np.stack([experts + n_old, refs])], axis=1),
            edge_attr=np.concatenate(
                [a.edge_attr, np.stack([quality, aesth], axis=1).astype(np.float32)]
            ),
            revision=a.revision + 1,
        )
        return SyntheticWorld(arrays, self.usefulness)

    @property
    def expert_ids(self) -> list[str]:
        return list(self.arrays.expert_ids)

    def subgraph(self, expert_ids: Sequence[str]) -> Subgraph:
        return extract_subgraph(self.arrays, expert_ids)

    def true_usefulness(self, prompt_x: torch.Tensor, expert_ids: Sequence[str]) -> torch.Tensor:
        rows = self.arrays.expert_rows()
        expert_x = torch.from_numpy(self.arrays.expert_x[[rows[i] for i in expert_ids]])
        return self.usefulness(prompt_x, expert_x)

    def select(
        self,
        prompt: TrainPrompt,
        k_ckpt: int = 3,
        k_lora: int = 5,
        pool: Sequence[str] | None = None,
    ) -> list[str]:
        """A random mix of checkpoints and LoRAs (of ``pool``, default every expert), fixed
        per prompt text (seeded by its hash).

        Unlike top-k retrieval this leaves useful and useless experts side by side, the
        situation the planner has to sort out when selection is imperfect.
        """
        seed = int.from_bytes(hashlib.sha1(prompt.text.encode()).digest()[:8], "little")
        generator = torch.Generator().manual_seed(seed)
        candidates = self.arrays.expert_ids if pool is None else list(pool)
        chosen = []
        for kind, k in (("ckpt", k_ckpt), ("peft", k_lora)):
            of_kind = [i for i in candidates if self._kinds[i] == kind]
            chosen += [of_kind[j] for j in torch.randperm(len(of_kind), generator=generator)[:k]]
        return chosen


class SyntheticEnv:
    """REINFORCE environment over a :class:`SyntheticWorld` (reward: merged usefulness)."""

    name = "synthetic"
    synthetic = True
    demo = True

    def __init__(
        self,
        world: SyntheticWorld,
        selector: Selector | None = None,
        reward_noise: float = 0.0,
    ) -> None:
        self.world = world
        self.selector = selector or world.select
        self.reward_noise = reward_noise

    @property
    def expert_ids(self) -> list[str]:
        return self.world.expert_ids

    def candidates(self, prompt: TrainPrompt) -> list[str]:
        return self.selector(prompt)

    def subgraph(self, expert_ids: Sequence[str]) -> Subgraph:
        return self.world.subgraph(expert_ids)

    def rewards(
        self,
        prompts: Sequence[TrainPrompt],
        subgraphs: Sequence[Subgraph],
        coefficients: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        values = torch.stack(
            [
                merged_usefulness(
                    self.world.true_usefulness(p.x, s.expert_ids), w.detach(), s.expert_kinds
                )
                for p, s, w in zip(prompts, subgraphs, coefficients, strict=True)
            ],
            dim=-1,
        )
        if self.reward_noise:
            values = values + self.reward_noise * torch.randn(values.shape)
        return values

    def optimum(self, prompt: TrainPrompt, subgraph: Subgraph) -> tuple[torch.Tensor, float]:
        """The best coefficients for this prompt and the reward they get."""
        u = self.world.true_usefulness(prompt.x, subgraph.expert_ids)
        best = best_coefficients(u, subgraph.expert_kinds)
        return best, float(merged_usefulness(u, best, subgraph.expert_kinds))
