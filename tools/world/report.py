"""The world's quality figures as Markdown tables (BENCHMARKS.md)."""

from __future__ import annotations


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _instruments(figures: dict) -> list[str]:
    tools = figures["instruments"]
    single, mixed = tools["judge_single"], tools["judge_compositional"]
    return [
        "| judge accuracy (held-out real images) | shape | colour | background | style |",
        "|---|---|---|---|---|",
        f"| single-attribute domains ({tools['images']} images) | "
        + " | ".join(_pct(single[a]) for a in ("shape", "colour", "background", "style"))
        + " |",
        f"| compositional scenes ({tools['compositional_images']} images, never generated in "
        "training) | "
        + " | ".join(_pct(mixed[a]) for a in ("shape", "colour", "background", "style"))
        + " |",
        "",
        f"World CLIP: an image's own caption is the closest of 64 in "
        f"{_pct(tools['clip_top1_of_64'])} of held-out images.",
        "",
    ]


def figures_markdown(figures: dict) -> str:
    base = figures["base"]
    lines = [
        *_instruments(figures),
        f"Base model, held-out plain captions ({base['images']} images): "
        f"shape {_pct(base['shape'])}, colour {_pct(base['colour'])}, "
        f"background plain {_pct(base['background'])}, no style {_pct(base['style'])}.",
        "",
        "| expert | kind | trap | serves | its attribute detected | shape kept | colour kept "
        "| unasked: attribute appears | unasked: mean pixel change | unasked: shape / colour |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in figures["experts"].items():
        lines.append(
            f"| {name} | {row['kind']} | {row['trap'] or ''} | {row['attribute'] or '–'} "
            f"| {_pct(row.get('detected'))} | {_pct(row.get('shape'))} "
            f"| {_pct(row.get('colour'))} | {_pct(row.get('unasked_detected'))} "
            f"| {row['unasked_change']:.3f} | {_pct(row['unasked_shape'])} / "
            f"{_pct(row['unasked_colour'])} |"
        )
    return "\n".join(lines)
