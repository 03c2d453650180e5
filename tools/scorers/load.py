"""Building scorers from local weights (a configured path or the Hugging Face cache, offline).

Expected checkpoints (docs/SCORERS.md has the details):

=============  ==============================================  =============================
metric         files                                           default cache repository
=============  ==============================================  =============================
clip_score     CLIP ViT-L/14 transformers folder               openai/clip-vit-large-patch14
aesthetic      same CLIP + ``sac+logos+ava1-l14-linearMSE``    (head: no default; a file)
image_reward   ``ImageReward.pt`` + ``med_config.json``        THUDM/ImageReward
               + BERT tokenizer (vocab.txt)                    bert-base-uncased
hps_v21        ``HPS_v2.1_compressed.pt`` (OpenCLIP ViT-H/14)  xswu/HPSv2
               + CLIP ViT-H/14 tokenizer                       laion/CLIP-ViT-H-14-laion2B-s32B-b79K
pick_score     PickScore_v1 transformers folder                yuvalkirstain/PickScore_v1
               + CLIP ViT-H/14 tokenizer (if not inside)       laion/CLIP-ViT-H-14-laion2B-s32B-b79K
=============  ==============================================  =============================

``.pt`` / ``.pth`` files are pickles: they load only with ``allow_pickle`` (then through
``torch.load(weights_only=True)``), or convert them to ``.safetensors`` once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.scorers.base import ClipEmbedder, Scorer
from tools.scorers.errors import MissingWeightsError, ScorerError
from tools.scorers.suite import ScorerSuite

logger = logging.getLogger(__name__)

METRICS = ("clip_score", "aesthetic", "image_reward", "hps_v21", "pick_score", "world_judge")
CLIP_L14_REPO = "openai/clip-vit-large-patch14"
CLIP_H14_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
IMAGE_REWARD_REPO = "THUDM/ImageReward"
BERT_REPO = "bert-base-uncased"
HPS_REPO = "xswu/HPSv2"
PICK_REPO = "yuvalkirstain/PickScore_v1"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt")


@dataclass(frozen=True)
class WeightSource:
    """One thing a scorer loads: its ``scorers.<setting>`` path or a cached repository."""

    setting: str
    repo: str | None
    expected: str


CLIP_L14 = WeightSource("clip", CLIP_L14_REPO, "CLIP ViT-L/14 (a transformers folder)")
SOURCES: dict[str, tuple[WeightSource, ...]] = {
    "clip_score": (CLIP_L14,),
    "aesthetic": (
        CLIP_L14,
        WeightSource(
            "aesthetic_head",
            None,
            "the LAION aesthetic head sac+logos+ava1-l14-linearMSE.pth (or .safetensors)",
        ),
    ),
    "image_reward": (
        WeightSource(
            "image_reward",
            IMAGE_REWARD_REPO,
            "ImageReward.pt (or .safetensors) with med_config.json",
        ),
    ),
    "hps_v21": (WeightSource("hps_v21", HPS_REPO, "HPS_v2.1_compressed.pt (or .safetensors)"),),
    "pick_score": (
        WeightSource("pick_score", PICK_REPO, "PickScore_v1 (a transformers CLIP folder)"),
    ),
    "world_judge": (WeightSource("world_judge", None, "the small world's judge.safetensors"),),
}


def cached_repo(repo_id: str) -> Path | None:
    """The local snapshot of ``repo_id`` in the Hugging Face cache, or None (never downloads)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def locate(
    metric: str, configured: Path | None, setting: str, repo_id: str | None, expected: str
) -> Path:
    """The configured path if it exists, else the cached repository; else a clear error."""
    if configured is not None:
        if Path(configured).exists():
            return Path(configured)
        raise MissingWeightsError(metric, expected, setting, configured)
    found = cached_repo(repo_id) if repo_id else None
    if found is None:
        raise MissingWeightsError(metric, expected, setting, f"the HF cache ({repo_id})")
    return found


def locate_source(metric: str, settings, source: WeightSource) -> Path:
    """Where ``source`` of ``metric`` is, given the scorer settings."""
    return locate(
        metric, getattr(settings, source.setting), source.setting, source.repo, source.expected
    )


def check_weights(settings, metric: str) -> list[Path]:
    """Every weight location ``metric`` needs (raises :class:`MissingWeightsError`)."""
    return [locate_source(metric, settings, source) for source in SOURCES[metric]]


def find_file(metric: str, folder: Path, names: Sequence[str], setting: str) -> Path:
    """``folder`` itself when it is a file, else the first of ``names`` inside it."""
    if folder.is_file():
        return folder
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise MissingWeightsError(metric, " or ".join(names), setting, folder)


def load_state(path: Path, allow_pickle: bool):
    from tools.weights.files import load_tensors

    return load_tensors(path, allow_pickle=allow_pickle)


def load_clip(folder: Path, metric: str, setting: str, device: str, tokenizer_folder=None):
    """A transformers CLIP folder as a :class:`ClipEmbedder` (tokenizer from the folder)."""
    from transformers import CLIPModel, CLIPTokenizer

    if not (folder / "config.json").is_file():
        raise MissingWeightsError(
            metric, "a transformers CLIP folder (config.json)", setting, folder
        )
    tokenizer_folder = tokenizer_folder or folder
    if not any((tokenizer_folder / n).is_file() for n in TOKENIZER_FILES):
        raise MissingWeightsError(
            metric, "CLIP tokenizer files (tokenizer.json or vocab.json)", setting, tokenizer_folder
        )
    model = CLIPModel.from_pretrained(folder, local_files_only=True)
    return ClipEmbedder(model, CLIPTokenizer.from_pretrained(tokenizer_folder), device)


def _is_demo(*paths: Path) -> bool:
    from tools.tiny.sd15 import is_demo_model

    return any(is_demo_model(p) for p in paths)


class _Loader:
    """Builds each scorer once; CLIP ViT-L/14 is shared by clip_score and aesthetic."""

    def __init__(self, settings, device: str, allow_pickle: bool) -> None:
        self.settings = settings
        self.device = device
        self.allow_pickle = allow_pickle
        self._clip_l: tuple[ClipEmbedder, Path] | None = None

    def clip_l(self, metric: str) -> tuple[ClipEmbedder, Path]:
        if self._clip_l is None:
            folder = locate_source(metric, self.settings, CLIP_L14)
            self._clip_l = load_clip(folder, metric, "clip", self.device), folder
        return self._clip_l

    def clip_score(self) -> Scorer:
        from tools.scorers.clip_scorers import CosineScorer
        from tools.scorers.preprocess import hf_clip_preprocess

        embedder, folder = self.clip_l("clip_score")
        return CosineScorer(
            "clip_score",
            embedder,
            100.0,
            floor=0.0,
            demo=_is_demo(folder),
            preprocess=hf_clip_preprocess,  # torchmetrics runs transformers' CLIPProcessor
        )

    def aesthetic(self) -> Scorer:
        from tools.scorers.clip_scorers import AestheticScorer, score_head

        embedder, folder = self.clip_l("aesthetic")
        path = locate_source("aesthetic", self.settings, SOURCES["aesthetic"][1])
        state = load_state(path, self.allow_pickle)
        head = score_head(embedder.model.config.projection_dim)
        head.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
        return AestheticScorer(embedder, head, demo=_is_demo(folder, path))

    def image_reward(self) -> Scorer:
        from transformers import BertTokenizer

        from tools.scorers.blip import ImageRewardScorer

        metric = setting = "image_reward"
        folder = locate_source(metric, self.settings, SOURCES[metric][0])
        weights = find_file(metric, folder, ("ImageReward.safetensors", "ImageReward.pt"), setting)
        config = find_file(metric, folder, ("med_config.json",), setting)
        tokenizer_folder = folder
        if not any((folder / n).is_file() for n in TOKENIZER_FILES):
            expected = "the bert-base-uncased tokenizer (vocab.txt)"
            tokenizer_folder = locate(metric, None, setting, BERT_REPO, expected)
        return ImageRewardScorer.from_state_dict(
            load_state(weights, self.allow_pickle),
            json.loads(config.read_text()),
            BertTokenizer.from_pretrained(tokenizer_folder, local_files_only=True),
            device=self.device,
            demo=_is_demo(weights),
        )

    def hps_v21(self) -> Scorer:
        from transformers import CLIPTokenizer

        from tools.scorers.clip_scorers import CosineScorer
        from tools.scorers.open_clip import find_heads, load_open_clip
        from tools.scorers.preprocess import pad_square_preprocess

        metric = "hps_v21"
        folder = locate_source(metric, self.settings, SOURCES[metric][0])
        names = ("HPS_v2.1_compressed.safetensors", "HPS_v2.1_compressed.pt")
        weights = find_file(metric, folder, names, "hps_v21")
        tokenizer = CLIPTokenizer.from_pretrained(self._h14_tokenizer(metric, weights.parent))
        state = load_state(weights, self.allow_pickle)
        heads = find_heads(state, weights.parent)
        logger.info("hps_v21: attention heads from the %s", heads.source)
        model = load_open_clip(state, tokenizer, heads)
        embedder = ClipEmbedder(model, tokenizer, self.device, pad_square_preprocess)
        return CosineScorer(metric, embedder, demo=_is_demo(weights))

    def pick_score(self) -> Scorer:
        from tools.scorers.clip_scorers import CosineScorer
        from tools.scorers.preprocess import hf_clip_preprocess

        metric = "pick_score"
        folder = locate_source(metric, self.settings, SOURCES[metric][0])
        tokenizer = self._h14_tokenizer(metric, folder)
        embedder = load_clip(folder, metric, "pick_score", self.device, tokenizer)
        embedder.preprocess = hf_clip_preprocess  # PickScore runs transformers' CLIPProcessor
        return CosineScorer(metric, embedder, embedder.logit_scale, demo=_is_demo(folder))

    def world_judge(self) -> Scorer:
        from tools.scorers.world_judge import WorldJudgeScorer

        path = locate_source("world_judge", self.settings, SOURCES["world_judge"][0])
        return WorldJudgeScorer.from_file(path, self.device)

    def _h14_tokenizer(self, metric: str, folder: Path) -> Path:
        if any((folder / n).is_file() for n in TOKENIZER_FILES):
            return folder
        expected = "the CLIP ViT-H/14 tokenizer (a transformers folder)"
        return locate(metric, self.settings.open_clip_h14, "open_clip_h14", CLIP_H14_REPO, expected)


def load_scorers(
    settings,
    metrics: Sequence[str] | None = None,
    device: str = "cpu",
    allow_pickle: bool = False,
) -> ScorerSuite:
    """The scorers named in ``metrics`` (default ``settings.metrics``) as one suite.

    ``settings`` is a :class:`tools.settings.ScorerSettings`.
    """
    metrics = list(metrics or settings.metrics)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ScorerError(f"unknown metric(s) {unknown}: expected some of {', '.join(METRICS)}")
    loader = _Loader(settings, device, allow_pickle)
    scorers = [getattr(loader, metric)() for metric in metrics]
    logger.info("loaded scorers %s on %s", ", ".join(metrics), device)
    return ScorerSuite(scorers, batch_size=settings.batch_size)
