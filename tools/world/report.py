"""The world's quality figures as Markdown tables (BENCHMARKS.md)."""

from __future__ import annotations


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def figures_markdown(figures: dict) -> str:
    base = figures["base"]
    lines = [
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
