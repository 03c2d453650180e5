"""One settings object for the whole application.

Read once at the edge (the CLI) and passed down. Sources, highest priority first:
``DIFFGRAPH_*`` environment variables (plus the standard ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` / ``CIVITAI_API_KEY`` / ``HF_TOKEN``), then ``diffgraph.toml`` in the
working directory, then the defaults below.

Each area owns one nested section (``selection``, ``planner`` ...); nested values are set
in the TOML file as tables (``[selection]``) or in the environment with a double
underscore (``DIFFGRAPH_SELECTION__K1=5``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from graph.config import GraphConfig
from graph.records import BaseFamily
from tools.generation.request import MAX_SEED

TOML_FILE = "diffgraph.toml"


class LLMSettings(BaseModel):
    """An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    temperature: float = 0.0
    timeout_s: float = 60.0
    max_schema_retries: int = Field(1, ge=0, le=5)
    structured_method: Literal["json_schema", "function_calling", "json_mode"] = Field(
        "json_schema",
        description="how structured output is requested; json_schema works on OpenAI, vLLM, "
        "llama.cpp server and Ollama; function_calling needs a tool-call parser on the server",
    )
    http_retries: int = Field(1, ge=0, le=5, description="client retries on 429/5xx/timeouts")
    max_tokens: int = Field(
        1024,
        ge=16,
        le=65536,
        description="reply length cap per call (sent as max_tokens and max_completion_tokens), "
        "so a server never keeps generating after the client gave up",
    )

    @property
    def configured(self) -> bool:
        """True when an endpoint and a model name are both set."""
        return bool(self.base_url and self.model)


class SelectionSettings(BaseModel):
    """Expert Selection Agent knobs (paper §3.2)."""

    k1: int = Field(3, ge=1, le=50, description="checkpoint candidates")
    k2: int = Field(3, ge=1, le=50, description="LoRA candidates per attribute")
    max_checkpoints: int = Field(2, ge=1, le=10)
    max_loras: int = Field(6, ge=0, le=32)
    min_similarity: float = Field(0.25, ge=-1.0, le=1.0)
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0)
    redundancy_threshold: float = Field(
        0.8, ge=0.0, le=1.0, description="no-LLM: cosine at which two experts are duplicates"
    )
    family: BaseFamily = Field(BaseFamily.SD15, description="active base-model family")
    max_attributes: int = Field(
        8, ge=1, le=32, description="visual attributes an LLM names (no-LLM: every phrase)"
    )
    relative_margin: float = Field(
        0.1, ge=0.0, le=2.0, description="no-LLM: keep within this of an attribute's best match"
    )
    max_prompt_chars: int = Field(2000, ge=100, le=20000, description="prompt text sent to LLM")
    no_llm_policy: Literal["needs", "similarity"] = Field(
        "needs",
        description="no-LLM filter: need-aware (per-phrase needs, negation, calibrated "
        "thresholds) or the older similarity threshold + MMR",
    )
    retriever: Literal["description", "autolora", "both"] = Field(
        "description",
        description="LoRA retrieval: description embeddings, AutoLoRA weight embeddings "
        "(tools/autolora), or the union of both",
    )


class PlatformSettings(BaseModel):
    """Expert platforms, homepage rendering and weight downloads (paper §3.1)."""

    civitai_url: str = Field("https://civitai.com", description="Civitai site and API base URL")
    huggingface_url: str = Field("https://huggingface.co", description="Hugging Face Hub endpoint")
    requests_per_s: float = Field(2.0, gt=0, le=100, description="request rate per platform")
    max_retries: int = Field(5, ge=0, le=20, description="retries on 429/5xx/broken transfers")
    max_retry_after_s: float = Field(300.0, ge=0, description="longest Retry-After honoured")
    timeout_s: float = Field(60.0, gt=0)
    max_file_gb: float = Field(8.0, gt=0, description="largest weight file downloaded")
    min_free_gb: float = Field(1.0, ge=0, description="free disk kept after a download")
    chromium: Path = Field(Path("/usr/bin/chromium"), description="browser for homepages")
    browser: Literal["auto", "off"] = Field("auto", description="off: use API descriptions")
    page_timeout_s: float = Field(20.0, gt=0)
    max_page_chars: int = Field(20000, ge=1000, le=200000)
    demo_port: int = Field(8977, ge=0, le=65535, description="port of the local demo platform")


class PlannerSettings(BaseModel):
    """Merging Planner training and inference knobs (paper §3.3)."""

    checkpoint: Path | None = Field(
        None, description="trained planner; default <data_dir>/planner/planner.safetensors"
    )
    steps: int = Field(200, ge=1, description="REINFORCE steps of train-planner")
    batch_size: int = Field(8, ge=1, le=1024, description="training prompts per step")
    lr: float = Field(
        1e-3,
        gt=0,
        description="AdamW learning rate (the paper's 1e-2 learned less here: BENCHMARKS.md)",
    )
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")
    samples_per_prompt: int = Field(4, ge=1, le=64, description="coefficient samples per prompt")
    baseline: Literal["leave_one_out", "running_mean"] = Field(
        "leave_one_out",
        description="REINFORCE baseline: mean of the prompt's other samples, or the running "
        "mean of all rewards (paper Eq. 4)",
    )
    baseline_momentum: float = Field(0.9, ge=0, lt=1, description="running_mean: b = m*b + (1-m)*u")
    kl_weight: float = Field(1e-3, ge=0, description="weight of the VGAE KL term")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    checkpoint_every: int = Field(50, ge=1, description="steps between checkpoints")

    @model_validator(mode="after")
    def _samples(self) -> PlannerSettings:
        if self.baseline == "leave_one_out" and self.samples_per_prompt < 2:
            raise ValueError("baseline leave_one_out needs samples_per_prompt >= 2")
        return self


class GenerationSettings(BaseModel):
    """Image generation (tools/generation)."""

    config_dir: Path | None = Field(
        None,
        description="local diffusers folder of the base family (configs + tokenizers, no "
        "weights needed) for single-file checkpoints; default: the Hugging Face cache",
    )
    trigger_words: Literal["prepend", "append", "off"] = Field(
        "prepend", description="where selected LoRAs' trigger words go in the prompt"
    )
    max_batch: int = Field(8, ge=1, le=256, description="images per pipeline call")
    noise_device: Literal["cpu", "pipeline"] = Field(
        "cpu",
        description="where each seed's initial noise is drawn: cpu (the same image for a seed "
        "on any hardware, diffusers' advice) or pipeline (the GPU's generator); recorded in "
        "recipes",
    )
    steps: int = Field(30, ge=1, le=500)
    guidance: float = Field(7.5, ge=0.0, le=50.0)
    size: int | None = Field(
        None, ge=16, le=4096, description="image side of planner training; default: native"
    )
    negative_prompt: str = ""


class ScorerSettings(BaseModel):
    """Image-quality scorers (tools/scorers): local weights and the reward's make-up.

    Each path may be left unset when its default repository is in the Hugging Face cache;
    ``docs/SCORERS.md`` lists the files each scorer expects.
    """

    clip: Path | None = Field(None, description="CLIP ViT-L/14 HF folder (clip_score, aesthetic)")
    aesthetic_head: Path | None = Field(None, description="LAION aesthetic MLP head file")
    image_reward: Path | None = Field(None, description="folder with ImageReward.pt + med_config")
    hps_v21: Path | None = Field(None, description="HPS_v2.1_compressed.pt (or .safetensors)")
    open_clip_h14: Path | None = Field(None, description="CLIP ViT-H-14 HF folder (tokenizer)")
    pick_score: Path | None = Field(None, description="PickScore_v1 HF folder")
    world_judge: Path | None = Field(None, description="the small world's judge.safetensors")
    metrics: list[str] = Field(
        default_factory=lambda: ["clip_score", "aesthetic"], description="scorers to run"
    )
    reward_weights: dict[str, float] = Field(
        default_factory=lambda: {"clip_score": 1.0, "aesthetic": 1.0},
        description="weight of each normalised metric in the reward",
    )
    normalization: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="per-metric (mean, std) overriding the defaults"
    )
    batch_size: int = Field(16, ge=1, le=1024)


class CalibrationSettings(BaseModel):
    """Node calibration (tools/calibration, paper §3.1)."""

    images_per_prompt: int = Field(2, ge=1, le=64)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    steps: int = Field(25, ge=1, le=500)
    guidance: float = Field(7.5, ge=0.0, le=50.0)
    size: int | None = Field(None, ge=16, le=4096, description="image side; default: native")
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, description="Ray cluster; default: start locally")
    ray_workers: int | None = Field(None, ge=1, description="actors; default: GPUs or 1")


class AutoLoRASettings(BaseModel):
    """AutoLoRA baseline (tools/autolora): weight-encoder LoRA retrieval and gated fusion."""

    encoder_checkpoint: Path | None = Field(
        None, description="weight encoder; default <data_dir>/autolora/encoder.safetensors"
    )
    fusion_checkpoint: Path | None = Field(
        None, description="fusion gates; default <data_dir>/autolora/fusion.safetensors"
    )
    d_model: int = Field(256, ge=4, description="encoder token width")
    layers: int = Field(2, ge=1, le=24, description="encoder transformer layers")
    heads: int = Field(4, ge=1, le=64)
    encoder_steps: int = Field(500, ge=1)
    encoder_batch: int = Field(32, ge=2, description="LoRAs per contrastive step")
    encoder_lr: float = Field(1e-3, gt=0)
    global_rank: int = Field(4, ge=0, le=256, description="rank of the global LoRA (0: none)")
    fusion_steps: int = Field(200, ge=1)
    fusion_batch: int = Field(2, ge=1, description="image-caption pairs per fusion step")
    fusion_lr: float = Field(1e-3, gt=0)
    pairs_per_lora: int = Field(4, ge=1, le=256, description="generated pairs per LoRA")
    pairs_size: int | None = Field(
        None, ge=64, le=2048, description="side of training images; default: native"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED)


class BenchmarkSettings(BaseModel):
    """The method benchmark (``diffgraph eval benchmark``, evals/benchmark.py)."""

    fixed_experts: list[str] = Field(
        default_factory=list,
        description="'Ours fixed' expert ids; empty: the experts selected most often over "
        "the benchmark's prompts",
    )
    pool_limit: int = Field(
        16, ge=1, description="w/o ESA: most experts merged (a seeded random subset beyond)"
    )


class Settings(BaseSettings):
    """Everything a command needs to know about its environment."""

    model_config = SettingsConfigDict(
        env_prefix="DIFFGRAPH_",
        env_nested_delimiter="__",
        toml_file=TOML_FILE,
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Path(".diffgraph")
    embedding_model: str | None = Field(
        None, description="local sentence-transformers path; default: packaged all-MiniLM-L6-v2"
    )
    chroma_url: str | None = Field(None, description="Chroma server URL; default: embedded")
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    base_model: Path | None = Field(
        None, description="base checkpoint (single-file .safetensors or diffusers folder)"
    )
    allow_pickle: bool = False
    civitai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "DIFFGRAPH_CIVITAI_API_KEY", "CIVITAI_API_KEY", "civitai_api_key"
        ),
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DIFFGRAPH_HF_TOKEN", "HF_TOKEN", "hf_token"),
    )
    llm: LLMSettings = LLMSettings()
    selection: SelectionSettings = SelectionSettings()
    planner: PlannerSettings = PlannerSettings()
    platforms: PlatformSettings = PlatformSettings()
    generation: GenerationSettings = GenerationSettings()
    scorers: ScorerSettings = ScorerSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    autolora: AutoLoRASettings = AutoLoRASettings()
    benchmark: BenchmarkSettings = BenchmarkSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _OpenAIEnvSource(settings_cls),
            TomlConfigSettingsSource(settings_cls),
        )

    @property
    def graph(self) -> GraphConfig:
        """The part of the settings that the graph package understands."""
        return GraphConfig(
            data_dir=self.data_dir,
            embedding_model=self.embedding_model,
            chroma_url=self.chroma_url,
        )

    @property
    def traces_dir(self) -> Path:
        return self.data_dir / "traces"


class _OpenAIEnvSource(PydanticBaseSettingsSource):
    """Honour the standard ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPENAI_MODEL``."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by pydantic
        return None, field_name, False

    def __call__(self) -> dict:
        import os

        llm = {
            key: os.environ[env]
            for key, env in (
                ("base_url", "OPENAI_BASE_URL"),
                ("api_key", "OPENAI_API_KEY"),
                ("model", "OPENAI_MODEL"),
            )
            if os.environ.get(env)
        }
        return {"llm": llm} if llm else {}


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from the environment and ``config_file`` (default ``./diffgraph.toml``)."""
    from graph.errors import DiffGraphError

    if config_file is not None and not Path(config_file).is_file():
        raise DiffGraphError(f"settings file {config_file} does not exist")
    try:
        if config_file is None:
            return Settings()
        scoped = type("Settings", (Settings,), {})
        scoped.model_config = {**Settings.model_config, "toml_file": str(config_file)}
        return scoped()
    except Exception as exc:  # pydantic ValidationError or a TOML syntax error
        raise DiffGraphError(
            f"invalid settings ({config_file or TOML_FILE} / environment): {exc}"
        ) from exc
