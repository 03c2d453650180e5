"""The demo on the small trained world (the default of ``make demo``).

The world (``tools/world/weights``, committed) has a trained base, trained experts served
by the local demo platform as its world catalogue, a trained judge and a trained tiny CLIP;
here are the settings, platform and prompts the demo stages use on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from graph.errors import DiffGraphError

if TYPE_CHECKING:
    from tools.platforms.demo import DemoPlatform
    from tools.settings import Settings

SIDE = 32  # the world's image side (SD 1.5's nominal 512 would be a 16× larger latent)
STEPS = 20  # the world's sampler settings (tools/world/evaluate.py measures with them)
GUIDANCE = 5.0
METRICS = ["world_judge", "clip_score"]
REWARD = {"world_judge": 1.0}  # the planner's reward: the judge's alignment with the prompt
PARTS = [
    "small trained world (32x32 shapes, tiny SD 1.5 architecture), not SD 1.5: the numbers "
    "measure the method, not photo quality",
    "base model, experts, judge and CLIP: trained here on the world's procedural images "
    "(`diffgraph world build` rebuilds them)",
    "experts: the world catalogue of the local demo platform (trained files)",
    "calibration and benchmark scores: the world's judge (asked attributes found) and "
    "CLIPScore with the world's CLIP",
]


def check_world(world: Path) -> Path:
    """``world`` if it holds a built world; a clear error naming the fix otherwise."""
    needed = ("manifest.json", "base/model_index.json", "judge.safetensors", "clip/config.json")
    missing = [name for name in needed if not (Path(world) / name).is_file()]
    if missing:
        raise DiffGraphError(
            f"the small world at {world} is incomplete (missing {', '.join(missing)}). Fix: "
            "`diffgraph world build`, or `diffgraph demo --classic` for the random tiny models"
        )
    return Path(world)


def world_settings(settings: Settings, world: Path) -> Settings:
    """The user's settings on the world's base, scorers and sampler settings."""
    calibration = settings.calibration.model_copy(
        update={
            "images_per_prompt": 1,
            "steps": STEPS,
            "guidance": GUIDANCE,
            "size": SIDE,
            "executor": "local",
        }
    )
    generation = settings.generation.model_copy(
        update={"steps": STEPS, "guidance": GUIDANCE, "size": SIDE}
    )
    scorers = settings.scorers.model_copy(
        update={
            "world_judge": world / "judge.safetensors",
            "clip": world / "clip",
            "metrics": list(METRICS),
            "reward_weights": dict(REWARD),
        }
    )
    return settings.model_copy(
        update={
            "base_model": world / "base",
            "calibration": calibration,
            "generation": generation,
            "scorers": scorers,
        }
    )


def world_env(settings: Settings) -> dict[str, str]:
    """Environment that gives a child ``diffgraph`` process the same world settings."""
    import json

    return {
        "DIFFGRAPH_DATA_DIR": str(settings.data_dir),
        "DIFFGRAPH_BASE_MODEL": str(settings.base_model),
        "DIFFGRAPH_SCORERS__WORLD_JUDGE": str(settings.scorers.world_judge),
        "DIFFGRAPH_SCORERS__CLIP": str(settings.scorers.clip),
        "DIFFGRAPH_SCORERS__METRICS": json.dumps(settings.scorers.metrics),
        "DIFFGRAPH_SCORERS__REWARD_WEIGHTS": json.dumps(settings.scorers.reward_weights),
        "DIFFGRAPH_GENERATION__GUIDANCE": str(GUIDANCE),
        "DIFFGRAPH_GENERATION__STEPS": str(STEPS),
        "DIFFGRAPH_GENERATION__SIZE": str(SIDE),
    }


def world_platform(settings: Settings, world: Path) -> DemoPlatform:
    """The local demo platform serving the world catalogue (downloads: the trained files)."""
    from tools.platforms.demo import DemoPlatform
    from tools.world.catalogue import world_catalogue, world_weights

    return DemoPlatform(
        world_weights(settings.data_dir / "world-platform", world),
        catalogue=world_catalogue(),
        port=settings.platforms.demo_port,
    )


def continue_commands(base: Path) -> str:
    """How to go on in the world after the demo (chat, web UI) with the same settings."""
    world = Path(base).parent
    return (
        "[bold]To go on in the small world[/]\n"
        f"  export DIFFGRAPH_BASE_MODEL={base} DIFFGRAPH_SCORERS__WORLD_JUDGE="
        f"{world / 'judge.safetensors'} DIFFGRAPH_SCORERS__CLIP={world / 'clip'} "
        f"DIFFGRAPH_GENERATION__STEPS={STEPS} DIFFGRAPH_GENERATION__GUIDANCE={GUIDANCE}\n"
        "  diffgraph chat   # or: diffgraph serve (the web UI)"
    )
