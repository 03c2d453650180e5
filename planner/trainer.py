"""REINFORCE training of the Merging Planner against a reward environment (paper §3.3).

Each step takes a batch of training prompts, selects their experts, activates their
subgraphs, samples coefficients ``w ~ Beta(α, β)`` (with reparameterised latents), gets one
reward per prompt from the environment and minimises ``-(u - b) · log P(w)`` plus the
weighted VGAE KL term, with AdamW and gradient-norm clipping.

Training is reproducible from ``settings.seed`` and resumable: the checkpoint holds the
weights, the AdamW state, the RNG state, the baseline and the step, and the batch order is
a function of (seed, step), so an interrupted run resumed from its checkpoint continues
exactly as if uninterrupted (it keeps its own ``RUN_SETTINGS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch_geometric.data import Batch, HeteroData

from graph.subgraph import Subgraph
from planner.activation import activate, fit_metric_scales
from planner.checkpoint import TrainState, read_checkpoint, save_checkpoint
from planner.config import PlannerConfig
from planner.curve import plot_curve, read_curve, write_curve
from planner.envs.base import RewardEnv, TrainPrompt
from planner.errors import CheckpointError, PlannerError
from planner.model import MergingPlanner
from planner.planners import ExpertFeaturizer
from planner.reinforce import RunningMean, leave_one_out, reinforce_loss
from tools.settings import PlannerSettings

log = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, float]], None]
# Settings that define a run: a resumed run keeps its own so that it continues exactly.
RUN_SETTINGS = (
    "batch_size",
    "lr",
    "weight_decay",
    "grad_clip",
    "samples_per_prompt",
    "baseline",
    "baseline_momentum",
    "kl_weight",
    "seed",
)


def curve_paths(checkpoint: Path) -> tuple[Path, Path]:
    """The reward-curve CSV and PNG written beside a checkpoint."""
    checkpoint = Path(checkpoint)
    stem = checkpoint.with_suffix("")
    return stem.with_name(stem.name + ".rewards.csv"), stem.with_name(stem.name + ".rewards.png")


class Trainer:
    """Trains one :class:`MergingPlanner`; build it with :meth:`start` or :meth:`resume`."""

    def __init__(
        self,
        model: MergingPlanner,
        env: RewardEnv,
        prompts: Sequence[TrainPrompt],
        settings: PlannerSettings,
        checkpoint: Path,
        state: TrainState,
        rng_state: torch.Tensor,
        optimizer_state: dict | None = None,
        featurizer: ExpertFeaturizer | None = None,
    ) -> None:
        if not prompts:
            raise PlannerError("no training prompts: give a prompt file with at least one line")
        self.model, self.env, self.prompts = model, env, list(prompts)
        self.settings, self.checkpoint, self.state = settings, Path(checkpoint), state
        self.featurizer = featurizer
        self.rng_state = rng_state
        self.optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=settings.lr,
            betas=(0.9, 0.99),
            weight_decay=settings.weight_decay,
            foreach=True,
        )
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.running_mean = RunningMean(settings.baseline_momentum, state.baseline)
        self.csv_path, self.png_path = curve_paths(self.checkpoint)
        self.rows = [r for r in read_curve(self.csv_path) if r["step"] <= state.step]
        self._graphs: dict[int, tuple[Subgraph, HeteroData]] = {}
        self._orders: dict[int, torch.Tensor] = {}

    @classmethod
    def start(
        cls,
        env: RewardEnv,
        prompts: Sequence[TrainPrompt],
        settings: PlannerSettings,
        checkpoint: Path,
        config: PlannerConfig | None = None,
        featurizer: ExpertFeaturizer | None = None,
    ) -> Trainer:
        """A fresh run: metric scales fitted on the environment's graph, seeded weights."""
        config = config or PlannerConfig()
        update: dict = {"metrics": fit_metric_scales(env.subgraph(env.expert_ids))}
        if config.expert_features == "learnable" and not config.expert_vocab:
            update["expert_vocab"] = env.expert_ids
        config = config.model_copy(update=update)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            model = MergingPlanner(config)
            rng_state = torch.get_rng_state()
        state = TrainState(
            prompts=len(prompts),
            env=env.name,
            synthetic=env.synthetic,
            demo=env.demo,
            settings=settings.model_dump(mode="json"),
        )
        return cls(model, env, prompts, settings, checkpoint, state, rng_state, None, featurizer)

    @classmethod
    def resume(
        cls,
        env: RewardEnv,
        prompts: Sequence[TrainPrompt],
        settings: PlannerSettings,
        checkpoint: Path,
        featurizer: ExpertFeaturizer | None = None,
    ) -> Trainer:
        """Continue the run saved in ``checkpoint``."""
        saved = read_checkpoint(checkpoint)
        if saved.state.env != env.name:
            raise CheckpointError(
                f"{checkpoint} was trained on the {saved.state.env!r} environment, not "
                f"{env.name!r}: resume with --env {saved.state.env}, or start a new run "
                "with another --out"
            )
        if saved.optimizer_state is None or saved.rng_state is None:
            raise CheckpointError(f"{checkpoint} holds no optimizer state and cannot be resumed")
        run = {k: v for k, v in saved.state.settings.items() if k in RUN_SETTINGS}
        changed = sorted(k for k, v in run.items() if getattr(settings, k) != v)
        if changed:
            log.warning("resuming %s with the run's own %s", checkpoint, ", ".join(changed))
        settings = settings.model_copy(update=PlannerSettings(**run).model_dump(include=set(run)))
        return cls(
            saved.build_model(),
            env,
            prompts,
            settings,
            checkpoint,
            saved.state,
            saved.rng_state,
            saved.optimizer_state,
            featurizer,
        )

    def run(self, steps: int, on_step: StepCallback | None = None) -> TrainState:
        """Train until ``steps`` steps in total are done; checkpoint on the way and at the end."""
        start = self.state.step
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            for step in range(start, steps):
                row = self._step(step)
                self.rng_state = torch.get_rng_state()
                self.rows.append(row)
                if on_step is not None:
                    on_step(row)
                done = step + 1
                if done % self.settings.checkpoint_every == 0 or done == steps:
                    self.save()
        if start >= steps:
            log.info("checkpoint %s is already at step %d", self.checkpoint, start)
        return self.state

    def save(self) -> None:
        save_checkpoint(self.checkpoint, self.model, self.state, self.optimizer, self.rng_state)
        write_curve(self.csv_path, self.rows)
        title = f"planner REINFORCE ({self.env.name} reward" + (", demo)" if self.env.demo else ")")
        plot_curve(self.rows, self.png_path, title)
        log.debug("step %d: checkpoint %s", self.state.step, self.checkpoint)

    # -- one step ----------------------------------------------------------------------

    def _step(self, step: int) -> dict[str, float]:
        indices = self._batch_indices(step)
        prompts = [self.prompts[i] for i in indices]
        graphs = [self._activated(i) for i in indices]
        subgraphs = [g[0] for g in graphs]
        self.model.train()
        plan = self.model(Batch.from_data_list([g[1] for g in graphs]))
        k = self.settings.samples_per_prompt
        w = plan.sample(k)  # (k, experts of the batch)
        log_prob = plan.log_prob(w)  # (k, prompts)
        per_prompt = w.split([s.num_experts for s in subgraphs], dim=1)
        rewards = self.env.rewards(prompts, subgraphs, per_prompt)
        if self.settings.baseline == "leave_one_out":
            baseline = leave_one_out(rewards)
        else:
            baseline = torch.tensor(self.running_mean.current(rewards))
        kl = self.model.kl_loss()
        loss = reinforce_loss(log_prob, rewards, baseline) + self.settings.kl_weight * kl
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.running_mean.update(rewards)
        self.state = self.state.model_copy(
            update={"step": step + 1, "baseline": self.running_mean.value}
        )
        return {
            "step": step + 1,
            "reward": float(rewards.mean()),
            "baseline": float(baseline.mean()),
            "loss": float(loss.detach()),
            "kl": float(kl.detach()),
            "grad_norm": float(grad_norm),
        }

    def _batch_indices(self, step: int) -> list[int]:
        """Prompts of a step: epoch-wise permutations seeded by (seed, epoch)."""
        n, size = len(self.prompts), self.settings.batch_size
        indices = []
        for position in range(step * size, (step + 1) * size):
            epoch = position // n
            if epoch not in self._orders:
                generator = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch)
                self._orders = {epoch: torch.randperm(n, generator=generator)}
            indices.append(int(self._orders[epoch][position % n]))
        return indices

    def _activated(self, index: int) -> tuple[Subgraph, HeteroData]:
        """The prompt's selected subgraph, activated (cached: the graph is fixed in a run)."""
        if index not in self._graphs:
            prompt = self.prompts[index]
            subgraph = self.env.subgraph(self.env.candidates(prompt))
            features = self.featurizer(subgraph) if self.featurizer else None
            data = activate(subgraph, prompt.x, self.model.config, features)
            self._graphs[index] = (subgraph, data)
        return self._graphs[index]
