"""Views of a :class:`evals.world_table.WorldTable`: Markdown tables, bar charts and an HTML
report with a gallery of prompts × methods (nearest-neighbour upscaled images)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evals.world_table import Cell, SuiteTable, WorldTable

UPSCALE = 3
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
.note{background:#fff3cd;border:1px solid #e0b400;padding:.6rem 1rem;margin:1rem 0}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:2px 6px;
font-size:.8rem;text-align:left;vertical-align:top}
section{border-top:2px solid #999;margin-top:1.5rem}
.gallery img{image-rendering:pixelated;display:block}.gallery td{font-size:.7rem}
"""
WORLD_NOTE = (
    "SMALL WORLD: a tiny SD 1.5-architecture model trained on 32×32 images of coloured shapes, "
    "its trained experts, judge and CLIP; the scores measure the method in this world, not "
    "photo quality."
)


def fmt(cell: Cell | None, digits: int = 3) -> str:
    if cell is None:
        return "n/a"
    return f"{cell.mean:.{digits}f} [{cell.low:.{digits}f}, {cell.high:.{digits}f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def suite_markdown(table: WorldTable, suite: SuiteTable) -> list[str]:
    from evals.world_table import OURS, SCORES, WIN_SCORES

    wins = {(w.baseline, w.score): w for w in suite.wins}
    head = ["Method", "images", *SCORES.values(), "shape / colour / style / bg found"]
    head += ["DiffGraph wins (GenEval)", "(expert attribute)", "(CLIP)"]
    lines = [
        f"### {suite.suite}: {suite.prompts} prompts × {table.options.seeds} seeds",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in suite.rows:
        if row.unavailable:
            lines.append(f"| {row.label} | 0 | unavailable: {row.unavailable} |")
            continue
        found = " / ".join(_pct(row.hits[a]) for a in ("shape", "colour", "style", "background"))
        duels = [
            "–" if row.method == OURS or (w := wins.get((row.method, s))) is None
            else f"{w.rate:.0%} ({w.wins}/{w.ties}/{w.losses})"
            for s in WIN_SCORES
        ]  # fmt: skip
        cells = [fmt(row.cells[s], 2 if s == "clip_score" else 3) for s in SCORES]
        lines.append("| " + " | ".join([row.label, str(row.images), *cells, found, *duels]) + " |")
    d = suite.diagnosis
    lines += ["", *(f"- {line}" for line in d.lines)]
    if d.missed:
        lines.append("- Gold experts the selection missed (prompts): " + _counts(table, d.missed))
    if d.extra:
        lines.append("- Non-gold experts it selected (prompts): " + _counts(table, d.extra))
    return lines


def _counts(table: WorldTable, counts: dict[str, int]) -> str:
    return ", ".join(f"{table.names.get(k, k)} ({v})" for k, v in counts.items())


def to_markdown(table: WorldTable) -> str:
    """The tables of every suite, with how they were made and what they mean."""
    o = table.options
    lines = [
        f"> {WORLD_NOTE}",
        "",
        f"- prompts: {len(table.prompts)} held-out ({', '.join(s.suite for s in table.suites)}; "
        f"`tools/world/suites.py`), {o.seeds} seeds each (prompt i: seeds {o.seed} + i …), "
        f"sampler steps {o.steps or 'the world default (20)'}, 32×32; "
        f"wall time {table.seconds:.0f} s",
        *(f"- **{k}**: {v}" for k, v in table.backends.items()),
        "- GenEval: share of the prompt's asked attributes (shape, colour; style and background "
        "when asked) the world's judge finds; expert attribute: share of the asked style / "
        "background found; CLIPScore: the world's CLIP; harm: drop of the judge's probability "
        "of the asked shape and colour from the base image of the same prompt and seed (> 0 "
        "worse). Mean over prompts (seeds averaged first) [95 % bootstrap interval, "
        f"{o.resamples} resamples over prompts].",
        "- DiffGraph wins: paired on the same prompt and seed, ties counted half: rate "
        "(wins/ties/losses).",
        *(f"- {n}" for n in table.notes),
        "",
    ]
    for suite in table.suites:
        lines += [*suite_markdown(table, suite), ""]
    return "\n".join(lines).rstrip() + "\n"


# -- charts and HTML ---------------------------------------------------------------------


def bar_chart(table: WorldTable, suite: SuiteTable, path: Path) -> Path:
    """GenEval and expert-attribute means per method with their 95 % intervals (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in suite.rows if not r.unavailable]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(rows)), 3.6), dpi=100)
    for k, (score, colour) in enumerate((("geneval", "#4a7"), ("expert", "#47a"))):
        cells = [r.cells.get(score) for r in rows]
        if all(c is None for c in cells):
            continue
        means = [c.mean if c else 0.0 for c in cells]
        errors = [
            [c.mean - c.low if c else 0.0 for c in cells],
            [c.high - c.mean if c else 0.0 for c in cells],
        ]
        label = "GenEval (judge)" if score == "geneval" else "expert attribute found"
        ax.bar(x + (k - 0.5) * 0.4, means, 0.4, yerr=errors, capsize=2, color=colour, label=label)
    ax.set_xticks(x, [r.label for r in rows], rotation=35, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(
        f"{suite.suite}: {suite.prompts} prompts × {table.options.seeds} seeds", fontsize=9
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _upscaled(source: Path, target: Path) -> None:
    from PIL import Image

    with Image.open(source) as image:
        size = (image.width * UPSCALE, image.height * UPSCALE)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").resize(size, Image.NEAREST).save(target)


def render_html(table: WorldTable, out_dir: Path, charts: dict[str, str]) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>DiffGraph Table 1 in the small world</title>",
        f"<style>{STYLE}</style></head><body><h1>DiffGraph Table 1 in the small world</h1>",
        f"<div class='note'>{escape(WORLD_NOTE)}</div><ul>",
        *(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in table.backends.items()),
        *(f"<li>{escape(n)}</li>" for n in table.notes),
        "</ul>",
    ]
    for suite in table.suites:
        parts.append(f"<section id='suite-{suite.suite}'><h2>{escape(suite.suite)}</h2>")
        parts.append(_html_table(suite_markdown(table, suite)))
        if suite.suite in charts:
            parts.append(f"<img src='{escape(charts[suite.suite], quote=True)}' alt='bar chart'>")
        parts.append(_gallery(table, suite, out_dir))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_table(lines: list[str]) -> str:
    """The suite's Markdown (title, one table, bullet lines) as HTML."""
    out, rows = [], []
    for line in lines:
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif line.startswith("- "):
            out.append(f"<li>{escape(line[2:])}</li>")
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table><ul>{''.join(out)}</ul>"


def _gallery(table: WorldTable, suite: SuiteTable, out_dir: Path) -> str:
    """Prompts × methods, each prompt's first seed, upscaled ×3 by nearest neighbour."""
    methods = [r for r in suite.rows if not r.unavailable]
    first = {}
    for s in table.images:
        key = (s.prompt_index, s.method)
        if key not in first or s.seed < first[key].seed:
            first[key] = s
    head = "".join(f"<th>{escape(r.label)}</th>" for r in methods)
    rows = []
    for prompt in (p for p in table.prompts if p.suite == suite.suite):
        asked = ", ".join(f"{k}={v}" for k, v in prompt.asked.items())
        cells = [
            f"<td>{escape(prompt.text)}<br><i>asks</i> {escape(asked)}<br><i>gold</i> "
            f"{escape(', '.join(prompt.gold) or 'none')}</td>"
        ]
        for row in methods:
            image = first.get((prompt.index, row.method))
            if image is None:
                cells.append("<td>–</td>")
                continue
            big = Path("report-images") / image.path
            _upscaled(out_dir / image.path, out_dir / big)
            reading = ", ".join(f"{k}={v}" for k, v in image.found.items())
            cells.append(
                f"<td><img src='{escape(big.as_posix(), quote=True)}' alt='{escape(reading)}' "
                f"title='{escape(reading)}'>GenEval {image.scores['geneval']:.2f}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<h3>Gallery (seed {table.options.seed} + prompt index)</h3><table class='gallery'>"
        f"<tr><th>prompt</th>{head}</tr>{''.join(rows)}</table>"
    )


def write_outputs(table: WorldTable, out_dir: Path) -> None:
    """Write ``world-table.json``, ``world-table.md``, a chart per suite and
    ``world-table.html`` into ``out_dir``, and list them in ``table.files``."""
    from tools.weights.files import atomic_path

    charts = {
        s.suite: bar_chart(table, s, out_dir / "charts" / f"{s.suite}.png")
        .relative_to(out_dir)
        .as_posix()
        for s in table.suites
    }
    files = {"json": "world-table.json", "markdown": "world-table.md", "html": "world-table.html"}
    table.files = {**files, **{f"chart:{k}": v for k, v in charts.items()}}
    texts = {
        "markdown": to_markdown(table),
        "html": render_html(table, out_dir, charts),
        "json": table.model_dump_json(indent=1),
    }
    for key, name in files.items():
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(texts[key], encoding="utf-8")
