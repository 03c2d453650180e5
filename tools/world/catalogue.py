"""The world's experts as a second catalogue of the local demo platform.

Served beside today's demo catalogue (a platform serves one of them): each expert has a
homepage (its skill text, trigger words, recommended weight), tags, example prompts and
its versions; downloads are the trained files of the world folder.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np

from tools.platforms.demo.catalogue import PUBLISHED, DemoCatalogue, DemoModel, DemoVersion
from tools.platforms.demo.weights import DemoWeights
from tools.world.captions import caption
from tools.world.experts import ALL_VERSIONS, ExpertSpec
from tools.world.scene import Scene

FIRST_WORLD_ID = 9601
WORLD_NOTICE = (
    "SMALL WORLD: an expert trained for DiffGraph's small 64x64 world of shapes "
    "(tiny SD 1.5 architecture), not a real SD 1.5 model."
)


def _examples(spec: ExpertSpec, k: int) -> list[str]:
    rng = np.random.default_rng(9000 + k)
    fields = {"shape": "star", "colour": "red"}
    if spec.attribute is not None:
        fields[spec.attribute[0]] = spec.attribute[1]
    return [caption(Scene(**fields, seed=i), rng) for i in range(2)]


def _category(spec: ExpertSpec) -> str:
    if spec.kind == "checkpoint":
        return "checkpoint"
    if spec.attribute is None:
        return "quality"
    return "style" if spec.attribute[0] == "style" else "concept"


def world_models() -> list[DemoModel]:
    """One demo-platform model per world expert, versions newest first."""
    slugs = list(dict.fromkeys(s.slug for s in ALL_VERSIONS))
    models = []
    for k, slug in enumerate(slugs):
        specs = sorted((s for s in ALL_VERSIONS if s.slug == slug), key=lambda s: s.version)
        first = specs[0]
        model_id = FIRST_WORLD_ID + k
        versions = [
            DemoVersion(
                id=model_id * 100 + n,
                name=spec.version,
                published=PUBLISHED + timedelta(days=k, weeks=6 * (n - 1)),
                seed=n,
            )
            for n, spec in enumerate(specs, start=1)
        ][::-1]
        models.append(
            DemoModel(
                id=model_id,
                slug=slug,
                name=first.name,
                type="LORA" if first.kind == "lora" else "Checkpoint",
                category=_category(first),  # type: ignore[arg-type]
                summary=first.summary,
                skill_text=first.skill_text,
                tags=[*first.tags, "small world"],
                trigger_words=list(first.trigger_words),
                example_prompts=_examples(first, k),
                weight=1.0 if first.kind == "lora" else None,
                versions=versions,
                rating=round(4.9 - 0.03 * k, 2),
                downloads=50_000 - 1_500 * k,
                notice=WORLD_NOTICE,
            )
        )
    return models


def world_catalogue() -> DemoCatalogue:
    return DemoCatalogue(world_models())


def world_weights(cache_dir: Path, world: Path) -> DemoWeights:
    """Download files of the world catalogue: copies of the world folder's expert files."""

    def copy(model: DemoModel, version: DemoVersion, path: Path) -> None:
        spec = next(s for s in ALL_VERSIONS if s.slug == model.slug and s.version == version.name)
        source = Path(world) / "experts" / spec.file_name
        if not source.is_file():
            raise FileNotFoundError(
                f"{source} is missing: the world is not built. Fix: `diffgraph world build`"
            )
        shutil.copyfile(source, path)

    return DemoWeights(Path(cache_dir), make_file=copy)
