"""Expert features from the weights (the parameter-based planner of the paper's ablation).

Instead of the description embedding, an expert's feature is a fixed random projection of
its flattened weights: the LoRA deltas ``ΔW`` of every adapted module, or every tensor of
a checkpoint. The projection is a count sketch (each weight is added, with a random sign,
to one of ``dim`` random buckets, both drawn from a generator seeded by the tensor's name),
so it never materialises a projection matrix and reads checkpoints tensor by tensor. The
result is scaled to unit length like a text embedding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

import torch

from graph.records import Expert, ExpertKind
from graph.subgraph import Subgraph
from planner.errors import PlannerError

NamedTensors = Iterable[tuple[str, torch.Tensor]]


def _name_seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def count_sketch(tensors: NamedTensors, dim: int, seed: int = 0) -> torch.Tensor:
    """Unit-length ``dim``-vector: ``y[h(j)] += s(j) · x_j`` over every weight ``x_j``."""
    out = torch.zeros(dim, dtype=torch.float64)
    for name, tensor in tensors:
        flat = tensor.detach().reshape(-1).to(torch.float64)
        generator = torch.Generator().manual_seed(_name_seed(seed, name))
        buckets = torch.randint(dim, (flat.numel(),), generator=generator)
        signs = torch.randint(2, (flat.numel(),), generator=generator, dtype=torch.float64)
        out.index_add_(0, buckets, flat * (2 * signs - 1))
    norm = out.norm()
    return (out / norm if norm > 0 else out).float()


def adapter_tensors(path, allow_pickle: bool = False) -> NamedTensors:
    """Every module's full-strength delta of a LoRA-type file, by module name."""
    from tools.weights.read import read_adapter

    adapter = read_adapter(path, allow_pickle=allow_pickle)
    for name in sorted(adapter.modules):
        yield name, adapter.modules[name].delta()


def checkpoint_tensors(path) -> NamedTensors:
    """Every tensor of a checkpoint by LDM key (same names for single files and folders)."""
    from tools.weights.checkpoints import Checkpoint

    with Checkpoint(path) as checkpoint:
        for key in sorted(checkpoint.ldm_keys()):
            yield key, checkpoint.ldm_tensor(key)


class ParameterFeaturizer:
    """``subgraph → (experts, dim)`` parameter features, cached per expert id and file hash."""

    def __init__(
        self,
        lookup: Callable[[Sequence[str]], list[Expert]],
        dim: int = 384,
        seed: int = 0,
        allow_pickle: bool = False,
    ) -> None:
        self.lookup = lookup
        self.dim = dim
        self.seed = seed
        self.allow_pickle = allow_pickle
        self._cache: dict[tuple[str, str | None], torch.Tensor] = {}

    def __call__(self, subgraph: Subgraph) -> torch.Tensor:
        experts = {e.id: e for e in self.lookup(subgraph.expert_ids)}
        return torch.stack([self.features(experts[i]) for i in subgraph.expert_ids])

    def features(self, expert: Expert) -> torch.Tensor:
        if expert.file is None or not expert.file.path:
            raise PlannerError(
                f"expert {expert.id!r} has no downloaded weights, which the parameter-based "
                "planner reads: download it first, or use the description-based planner"
            )
        key = (expert.id, expert.file.sha256)
        if key not in self._cache:
            path = expert.file.path
            if expert.kind is ExpertKind.PEFT:
                tensors = adapter_tensors(path, self.allow_pickle)
            else:
                tensors = checkpoint_tensors(path)
            self._cache[key] = count_sketch(tensors, self.dim, self.seed)
        return self._cache[key]
