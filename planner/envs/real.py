"""The real environment: merge the experts with the sampled coefficients, generate, score.

Each coefficient sample of a prompt becomes one ``MergePlan`` (softmax within checkpoints
and within LoRAs); the loaded pipeline generates the prompt's image(s) with it (selected
LoRAs' trigger words added) and the reward is the scorers' combined reward, averaged over
the images. The generator, the scorers and the reward function are injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from graph.subgraph import Subgraph
from planner.envs.base import Selector, TrainPrompt
from planner.merge import to_merge_plan
from planner.planners import PlanRequest, PlanResult

if TYPE_CHECKING:
    from graph.universal import UniversalGraph

# Scores per metric ({name: [images]}) → one reward per image.
RewardFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class RealEnv:
    """Reward = scored images of the merged model (slow: one generation per sample)."""

    name = "real"
    synthetic = False

    def __init__(
        self,
        graph: UniversalGraph,
        generator,
        scorers,
        reward: RewardFn,
        selector: Selector,
        request_options: dict | None = None,
    ) -> None:
        self.graph = graph
        self.generator = generator
        self.scorers = scorers
        self.reward = reward
        self.selector = selector
        self.request_options = dict(request_options or {})

    @property
    def demo(self) -> bool:
        """True when the pipeline or a scorer has tiny random weights."""
        return bool(self.generator.demo or getattr(self.scorers, "demo", False))

    @property
    def expert_ids(self) -> list[str]:
        """Active experts of the generator's base family."""
        return [e.id for e in self.graph.experts(base=self.generator.family)]

    def candidates(self, prompt: TrainPrompt) -> list[str]:
        return self.selector(prompt)

    def subgraph(self, expert_ids: Sequence[str]) -> Subgraph:
        return self.graph.subgraph(expert_ids)

    def rewards(
        self,
        prompts: Sequence[TrainPrompt],
        subgraphs: Sequence[Subgraph],
        coefficients: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        columns = []
        for prompt, subgraph, samples in zip(prompts, subgraphs, coefficients, strict=True):
            experts = self.graph.experts(ids=subgraph.expert_ids)
            request = PlanRequest(prompt.text, prompt.x, subgraph)
            columns.append(
                torch.stack([self._reward(prompt.text, request, experts, w) for w in samples])
            )
        return torch.stack(columns, dim=-1)

    def _reward(self, text: str, request: PlanRequest, experts, coefficients) -> torch.Tensor:
        from tools.generation.request import GenerationRequest

        result = PlanResult.from_coefficients(request, "sample", "learned", coefficients)
        plan = to_merge_plan(result, experts)
        triggers = [w for e in experts if e.kind.value == "peft" for w in e.trigger_words]
        images = self.generator.generate(
            GenerationRequest(prompts=[text], **self.request_options), plan, triggers
        )
        scores = self.scorers.score(images.images, images.prompts)
        return self.reward(scores).float().mean()
