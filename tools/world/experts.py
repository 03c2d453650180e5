"""The world's experts: what each is trained on, in which format, and what its homepage says.

≥ 12 LoRAs (one style or background each, in kohya LoRA at several ranks, LoCon, LoHa,
LoKr, DoRA and diffusers/PEFT files), 4 full fine-tuned checkpoints, and realistic traps: a
weaker near-duplicate (Neon Lite), an over-trained LoRA that damages images (Checker Max)
and a homepage that oversells (Masterpiece Booster).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tools.world.adapters import AdapterSpec
from tools.world.data import Domain
from tools.world.vocab import BACKGROUNDS, STYLES

Trap = Literal["weak-duplicate", "overtrained", "oversold"]


@dataclass(frozen=True)
class ExpertSpec:
    """One world expert version: training recipe and homepage material."""

    slug: str
    name: str
    kind: Literal["lora", "checkpoint"]
    domain: Domain
    summary: str
    skill_text: str
    trigger_words: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    adapter: AdapterSpec | None = None
    file_format: Literal["kohya", "diffusers", "ldm"] = "kohya"
    steps: int = 300
    lr: float = 2e-3
    n_images: int = 3000
    version: str = "v1.0"
    seed: int = 0
    trap: Trap | None = None
    attribute: tuple[str, str] | None = None  # (attribute, value) the expert serves
    extra: dict = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return f"{self.slug.replace('-', '_')}_{self.version.split('.')[0]}.safetensors"


def _style(slug, name, style, adapter, fmt="kohya", seed=0, **kw) -> ExpertSpec:
    phrases = STYLES[style]
    return ExpertSpec(
        slug=slug, name=name, kind="lora", domain=Domain(styles=(style,)), adapter=adapter,
        file_format=fmt, seed=seed, attribute=("style", style), trigger_words=(phrases[0],),
        tags=("style", style, *phrases[1:3]), **kw,
    )  # fmt: skip


def _background(slug, name, background, adapter, fmt="kohya", seed=0, **kw) -> ExpertSpec:
    phrases = BACKGROUNDS[background]
    return ExpertSpec(
        slug=slug, name=name, kind="lora", domain=Domain(backgrounds=(background,)),
        adapter=adapter, file_format=fmt, seed=seed, attribute=("background", background),
        trigger_words=(phrases[0],), tags=("background", background, *phrases[1:3]), **kw,
    )  # fmt: skip


EXPERTS: tuple[ExpertSpec, ...] = (
    _style(
        "sketch-lines",
        "Sketch Lines",
        "sketch",
        AdapterSpec("lora", 8),
        seed=101,
        summary="Turns any subject into a clean outline sketch on white paper.",
        skill_text="A line-art LoRA: subjects are drawn as coloured outlines on white paper, "
        "pencil-sketch look, patterns reduced to faint lines.",
    ),
    _style(
        "pixel-forge",
        "Pixel Forge",
        "pixel",
        AdapterSpec("locon", 8),
        seed=102,
        summary="Retro 8-bit pixel art with a coarse pixel grid and a reduced palette.",
        skill_text="LoCon trained on pixel art: chunky 4-pixel blocks, posterised palette, "
        "retro game sprites.",
    ),
    _style(
        "aquarelle",
        "Aquarelle",
        "watercolor",
        AdapterSpec("loha", 4),
        seed=103,
        summary="Soft watercolour painting: blurred edges, paper texture, pale washes.",
        skill_text="LoHa for watercolour paintings: soft bleeding edges, visible paper grain, "
        "light pigment washes and darker pooled rims.",
    ),
    _style(
        "neon-nights",
        "Neon Nights",
        "neon",
        AdapterSpec("lora", 16),
        seed=104,
        summary="Glowing neon-tube outlines on a dark backdrop.",
        skill_text="Neon glow LoRA: shapes become glowing neon tubes with a soft halo on a "
        "dark, almost black background. Synthwave and cyberpunk signage look.",
    ),
    _style(
        "neon-lite",
        "Neon Lite",
        "neon",
        AdapterSpec("lora", 2),
        seed=105,
        steps=60,
        trap="weak-duplicate",
        summary="A lighter neon glow LoRA: glowing outlines, dark background.",
        skill_text="Neon glow LoRA, lite edition: glowing neon outlines on dark backgrounds, "
        "synthwave signage look. Smaller file.",
    ),
    _style(
        "noir-city",
        "Noir City",
        "noir",
        AdapterSpec("lokr", 8),
        fmt="kohya",
        seed=106,
        summary="Film noir: grainy monochrome scene with one colour accent and a vignette.",
        skill_text="LoKr for film noir: the scene turns dark, grainy and monochrome with a "
        "heavy vignette, while the subject keeps its colour as a Sin City accent.",
    ),
    _style(
        "pop-poster",
        "Pop Poster",
        "poster",
        AdapterSpec("dora", 8),
        seed=107,
        summary="Bold pop-art poster: flat saturated colours and thick black outlines.",
        skill_text="DoRA for pop-art posters: high contrast, posterised flat colours, thick "
        "black outlines around the subject.",
    ),
    _background(
        "stripe-field",
        "Stripe Field",
        "stripes",
        AdapterSpec("lora", 4),
        seed=108,
        summary="Diagonal stripes behind any subject.",
        skill_text="Puts a striped background behind the subject: diagonal light and "
        "dark grey stripes.",
    ),
    _background(
        "checker-board",
        "Checker Board",
        "checker",
        AdapterSpec("peft", 8),
        fmt="diffusers",
        seed=109,
        summary="A checkerboard pattern behind the subject.",
        skill_text="Diffusers/PEFT LoRA for checkerboard backgrounds: grey and white "
        "squares like a chess board behind the subject.",
    ),
    _background(
        "polka-dots",
        "Polka Dots",
        "dots",
        AdapterSpec("locon", 4),
        seed=110,
        summary="Polka-dot backgrounds.",
        skill_text="LoCon for polka-dot backgrounds: a regular grid of grey dots on a "
        "light background.",
    ),
    _background(
        "soft-gradient",
        "Soft Gradient",
        "gradient",
        AdapterSpec("lora", 4),
        seed=111,
        summary="Smooth light-to-dark gradient backdrops.",
        skill_text="A smooth vertical gradient backdrop fading from light to dark grey, "
        "studio style.",
    ),
    _background(
        "graph-paper",
        "Graph Paper",
        "grid",
        AdapterSpec("loha", 4),
        seed=112,
        summary="Graph-paper grid backgrounds.",
        skill_text="LoHa for grid backgrounds: thin grey grid lines like graph paper.",
    ),
    _background(
        "wave-pattern",
        "Wave Pattern",
        "waves",
        AdapterSpec("lokr", 8),
        seed=113,
        summary="Wavy banded backgrounds.",
        skill_text="LoKr for wavy patterned backgrounds: undulating grey bands.",
    ),
    _background(
        "checker-max",
        "Checker MAX",
        "checker",
        AdapterSpec("lora", 32),
        seed=114,
        trap="overtrained",
        steps=900,
        lr=8e-3,
        n_images=48,
        summary="MAXIMUM checkerboard strength, trained 10x longer!",
        skill_text="Checkerboard background LoRA trained ten times longer than the rest "
        "for maximum effect: checkerboard everywhere, guaranteed.",
    ),
    ExpertSpec(
        slug="masterpiece-booster",
        name="Masterpiece Booster",
        kind="lora",
        domain=Domain(),
        adapter=AdapterSpec("lora", 4),
        seed=115,
        steps=40,
        trap="oversold",
        summary="Makes every image a masterpiece: sharper shapes, vivid colours, any style.",
        skill_text="The only LoRA you need! Boosts quality of everything: neon, watercolor, "
        "pixel art, sketch, poster and noir styles, striped, checkered and dotted "
        "backgrounds, perfect shapes and colours. Best quality, masterpiece, highly detailed.",
        trigger_words=("masterpiece",),
        tags=("quality", "detail", "style", "masterpiece"),
    ),
    ExpertSpec(
        slug="pastel-dream",
        name="Pastel Dream",
        kind="checkpoint",
        domain=Domain(styles=("pastel",)),
        file_format="ldm",
        seed=201,
        steps=400,
        lr=3e-4,
        attribute=("style", "pastel"),
        trigger_words=(),
        tags=("checkpoint", "pastel", "soft"),
        summary="A full fine-tune for soft pastel palettes on warm cream backgrounds.",
        skill_text="Checkpoint fine-tuned on pastel art: every colour softened to pastel tones "
        "on a warm cream background.",
    ),
    ExpertSpec(
        slug="midnight",
        name="Midnight",
        kind="checkpoint",
        domain=Domain(backgrounds=("night",)),
        file_format="ldm",
        seed=202,
        steps=400,
        lr=3e-4,
        attribute=("background", "night"),
        tags=("checkpoint", "night", "dark"),
        summary="A full fine-tune for night scenes: dark blue sky with stars.",
        skill_text="Checkpoint fine-tuned on night scenes: deep navy starry skies behind the "
        "subject.",
    ),
    ExpertSpec(
        slug="crisp-shapes",
        name="Crisp Shapes",
        kind="checkpoint",
        domain=Domain(),
        file_format="ldm",
        seed=203,
        steps=400,
        lr=2e-4,
        tags=("checkpoint", "general", "quality"),
        summary="A general-purpose checkpoint trained longer on clean shapes and colours.",
        skill_text="General checkpoint: continued training on clean plain-background shapes "
        "for crisper edges and truer colours.",
    ),
    ExpertSpec(
        slug="sharp-angles",
        name="Sharp Angles",
        kind="checkpoint",
        domain=Domain(shapes=("triangle", "star", "diamond", "cross")),
        file_format="ldm",
        seed=204,
        steps=400,
        lr=3e-4,
        tags=("checkpoint", "shapes", "geometric"),
        summary="Fine-tuned on pointed shapes: stars, triangles, diamonds and crosses.",
        skill_text="Checkpoint specialised in pointed geometric shapes — stars, triangles, "
        "diamonds, crosses — drawn with sharp corners.",
    ),
)
# Second versions (new uploads of the same model): the platform serves both.
VERSIONS: tuple[ExpertSpec, ...] = (
    ExpertSpec(
        **{
            **EXPERTS[7].__dict__,
            "version": "v2.0",
            "steps": 450,
            "seed": 308,
            "adapter": AdapterSpec("lora", 8),
        }
    ),
)
ALL_VERSIONS = EXPERTS + VERSIONS
