"""``diffgraph world build``: the whole world from nothing, deterministic and resumable.

Stages (each skipped when its output exists, long ones resume from snapshots):
VAE → base UNet + text encoder (trained together) → judge → CLIP → every expert version → export.
Training copies (float32) live in the work folder; the export writes the shipped files
(fp16 safetensors) into the world folder with a manifest of hashes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from tools.world import WORLD_DIR
from tools.world.experts import ALL_VERSIONS, ExpertSpec
from tools.world.models import (
    WORLD_MARK,
    WORLD_NOTE,
    assemble_pipeline,
    new_text_encoder,
    new_unet,
    new_vae,
)
from tools.world.progress import Progress, Resume, no_progress, write_json

SEED = 0


@dataclass(frozen=True)
class BuildConfig:
    """Step counts of each stage (defaults: the shipped world)."""

    vae_steps: int = 3000
    base_steps: int = 900
    base_refine_steps: int = 500  # second stage: new images, lr 3e-4
    judge_steps: int = 600
    clip_steps: int = 800
    expert_scale: float = 0.4  # multiplies every expert's steps (sized for 2 CPU cores)
    n_images: int = 24_000


def _steps(spec: ExpertSpec, config: BuildConfig) -> int:
    return max(2, round(spec.steps * config.expert_scale))


class WorldBuild:
    """Runs the stages into ``work`` and exports into ``out``."""

    def __init__(
        self, work: Path, out: Path = WORLD_DIR, config: BuildConfig = BuildConfig(),
        progress: Progress = no_progress,
    ) -> None:  # fmt: skip
        self.work = Path(work)
        self.out = Path(out)
        self.config = config
        self.progress = progress
        self.work.mkdir(parents=True, exist_ok=True)

    def _resume(self, stage: str) -> Resume:
        return Resume(self.work / "snapshots" / stage, every=100)

    def _save_module(self, module: torch.nn.Module, name: str) -> None:
        from safetensors.torch import save_file

        path = self.work / f"{name}.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
        tmp.replace(path)

    def _load_module(self, module: torch.nn.Module, name: str) -> torch.nn.Module | None:
        from safetensors.torch import load_file

        path = self.work / f"{name}.safetensors"
        if not path.is_file():
            return None
        module.load_state_dict(load_file(str(path)))
        return module.eval()

    def vae(self):
        from tools.world.vae_train import train_vae

        vae = new_vae(SEED)
        config_path = self.work / "vae_scaling.json"
        if self._load_module(vae, "vae") is not None and config_path.is_file():
            vae.register_to_config(**json.loads(config_path.read_text()))
            return vae
        resume = self._resume("vae")
        vae = train_vae(
            self.config.vae_steps,
            SEED,
            resume,
            n_images=min(12_000, self.config.n_images),
            progress=self.progress,
        )
        write_json(config_path, {"scaling_factor": vae.config.scaling_factor})
        self._save_module(vae, "vae")
        resume.clear()
        return vae

    def base(self):
        from tools.world.training import Base, train_base

        vae = self.vae()
        unet, text_encoder = new_unet(SEED), new_text_encoder(SEED)
        if self._load_module(unet, "unet") and self._load_module(text_encoder, "text_encoder"):
            return Base(unet, vae, text_encoder)
        stage1 = Base(new_unet(SEED), vae, new_text_encoder(SEED))
        if (
            self._load_module(stage1.unet, "unet_stage1") is None
            or self._load_module(stage1.text_encoder, "text_encoder_stage1") is None
        ):
            resume = self._resume("base")
            stage1 = train_base(
                vae, self.config.base_steps, SEED, resume, self.config.n_images, self.progress
            )
            self._save_module(stage1.unet, "unet_stage1")
            self._save_module(stage1.text_encoder, "text_encoder_stage1")
            resume.clear()
        resume = self._resume("base-refine")
        base = train_base(
            vae, self.config.base_refine_steps, SEED + 10, resume, self.config.n_images,
            self.progress, init=stage1, lr=3e-4, task="base refine",
        )  # fmt: skip
        self._save_module(base.text_encoder, "text_encoder")
        self._save_module(base.unet, "unet")
        resume.clear()
        return base

    def judge(self):
        from tools.world.judge import Judge, train_judge

        judge = Judge()
        if self._load_module(judge, "judge") is not None:
            return judge
        resume = self._resume("judge")
        judge = train_judge(
            self.config.judge_steps,
            SEED + 1,
            resume,
            self.vae(),
            self.config.n_images,
            progress=self.progress,
        )
        self._save_module(judge, "judge")
        resume.clear()
        return judge

    def clip(self):
        from transformers import CLIPModel

        from tools.world.clip_train import train_clip, world_clip_config
        from tools.world.models import world_tokenizer

        model = CLIPModel(world_clip_config())
        if self._load_module(model, "clip") is not None:
            return model, world_tokenizer()
        resume = self._resume("clip")
        model, tokenizer = train_clip(
            self.config.clip_steps, SEED + 2, resume, self.config.n_images, progress=self.progress
        )
        self._save_module(model, "clip")
        resume.clear()
        return model, tokenizer

    def experts(self) -> dict[str, Path]:
        from tools.world.training import train_expert

        folder = self.work / "experts"
        folder.mkdir(exist_ok=True)
        base = None
        paths = {}
        for spec in ALL_VERSIONS:
            path = folder / spec.file_name
            if not path.is_file():
                base = base or self.base()
                n_images = min(spec.n_images, self.config.n_images)
                scaled = ExpertSpec(
                    **{**spec.__dict__, "steps": _steps(spec, self.config), "n_images": n_images}
                )
                resume = self._resume(f"expert-{spec.file_name}")
                train_expert(scaled, base, path, resume, self.progress)
                resume.clear()
            paths[spec.file_name] = path
        return paths

    def run(self) -> Path:
        """Every stage, then the export; returns the world folder."""
        self.base()
        self.judge()
        self.clip()
        experts = self.experts()
        return export(self, experts)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(build: WorldBuild, experts: dict[str, Path]) -> Path:
    """The shipped files: fp16 base folder, experts, judge, CLIP, manifest (atomically)."""
    from safetensors.torch import save_file

    from tools.tiny.tokenizer import write_vocab_files
    from tools.world.models import TOKEN_WORDS

    out = build.out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "experts").mkdir(parents=True)
    base = build.base()
    pipe = assemble_pipeline(base.unet, base.vae, base.text_encoder)
    pipe.to(torch.float16).save_pretrained(tmp / "base", safe_serialization=True)
    pipe.to(torch.float32)
    write_vocab_files(tmp / "base" / "tokenizer", TOKEN_WORDS)
    (tmp / "base" / f"{WORLD_MARK}.txt").write_text(WORLD_NOTE + "\n")
    for name, path in experts.items():
        shutil.copyfile(path, tmp / "experts" / name)
    judge = build.judge()
    save_file({k: v.half().contiguous() for k, v in judge.state_dict().items()},
              str(tmp / "judge.safetensors"), {WORLD_MARK: WORLD_NOTE})  # fmt: skip
    clip, tokenizer = build.clip()
    clip.to(torch.float16).save_pretrained(tmp / "clip", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "clip")
    write_vocab_files(tmp / "clip", TOKEN_WORDS)
    (tmp / "clip" / f"{WORLD_MARK}.txt").write_text(WORLD_NOTE + "\n")
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {
        "note": WORLD_NOTE,
        "config": build.config.__dict__,
        "files": {str(p.relative_to(tmp)): _sha256(p) for p in files},
    }
    write_json(tmp / "manifest.json", manifest)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.replace(old)
        tmp.replace(out)
        shutil.rmtree(old)
    else:
        tmp.replace(out)
    return out
