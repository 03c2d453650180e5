"""The benchmark's HTML gallery: per prompt, every row's images, scores, experts and
coefficients, with links to each row's recipe and its A1111 / ComfyUI exports, in one
self-contained page (images by relative path, or embedded)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from evals.benchmark import (
    METRIC_LABELS,
    BenchmarkReport,
    MethodSummary,
    RowResult,
    format_mean,
    metric_columns,
)

NAME = "gallery.html"
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
.demo{background:#fff3cd;border:1px solid #e0b400;padding:.6rem 1rem;margin:1rem 0}
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:2px 6px;
font-size:.85rem;text-align:left}section{border-top:2px solid #999;margin-top:1.5rem}
.prompt{font-size:1.1rem;background:#fff;padding:.5rem;border-left:4px solid #4a7}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.card{background:#fff;border:1px solid #ddd;
padding:.5rem;width:270px;margin:0}.card h3{margin:.2rem 0;font-size:1rem}
.card img{width:256px;height:auto;image-rendering:pixelated;display:block;margin-bottom:4px}
.off{color:#a00}.notes{font-size:.8rem;color:#555;padding-left:1rem}
"""


def write_gallery(report: BenchmarkReport, out_dir: Path, embed: bool = False) -> Path:
    """Write ``gallery.html`` into ``out_dir`` (the folder the report's image paths start
    from); ``embed`` puts the images inside the page as data URIs."""
    from tools.weights.files import atomic_path

    path = Path(out_dir) / NAME
    with atomic_path(path) as tmp:
        tmp.write_text(render(report, Path(out_dir), embed), encoding="utf-8")
    return path


def render(report: BenchmarkReport, out_dir: Path, embed: bool = False) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>DiffGraph benchmark</title>",
        f"<style>{STYLE}</style></head><body><h1>DiffGraph benchmark</h1>",
    ]
    if report.demo:
        parts.append(
            "<div class='demo'><b>DEMO RUN</b>: parts of this run used demo backends (see "
            "below); the images and scores say nothing about quality.</div>"
        )
    parts.append("<ul>")
    parts += [f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in report.backends.items()]
    parts += [
        f"<li><b>metric {escape(m)} not scored</b>: {escape(why)}</li>"
        for m, why in report.unavailable_metrics.items()
    ]
    parts += [f"<li>{escape(n)}</li>" for n in report.notes]
    parts.append("</ul><h2>Means</h2>")
    parts.append(_means(report))
    by_key = {(r.prompt_index, r.method): r for r in report.rows}
    for prompt in report.prompts:
        parts.append(
            f"<section id='prompt-{prompt.index}'><h2>Prompt {prompt.index + 1} "
            f"(seed {prompt.seed})</h2><p class='prompt'>{escape(prompt.prompt)}</p>"
            f"<p>selected ({escape(prompt.selection_mode)}): "
            f"{escape(', '.join(prompt.selected) or 'none')}</p><div class='grid'>"
        )
        for summary in report.methods:
            row = by_key.get((prompt.index, summary.name))
            parts.append(_card(report, summary, row, out_dir, embed))
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _means(report: BenchmarkReport) -> str:
    metrics = metric_columns(report)
    head = "".join(f"<th>{escape(METRIC_LABELS.get(m, m))}</th>" for m in metrics)
    rows = []
    for s in report.methods:
        label = escape(s.label) + (" (demo)" if s.demo else "")
        cells = "".join(f"<td>{escape(format_mean(s, m))}</td>" for m in metrics)
        rows.append(f"<tr><td>{label}</td><td>{escape(s.kind)}</td><td>{s.images}</td>{cells}</tr>")
    return f"<table><tr><th>row</th><th>kind</th><th>images</th>{head}</tr>{''.join(rows)}</table>"


def _card(
    report: BenchmarkReport,
    summary: MethodSummary,
    row: RowResult | None,
    out_dir: Path,
    embed: bool,
) -> str:
    title = f"<h3>{escape(summary.label)}</h3>"
    if summary.unavailable:
        return _off(title, f"unavailable: {summary.unavailable}")
    if row is None or row.error:
        return _off(title, f"error: {row.error if row else 'not run'}")
    parts = [f"<figure class='card'>{title}"]
    for image in row.images:
        alt = escape(f"{summary.label}, seed {image.seed}")
        parts.append(f"<img src='{_src(image.path, out_dir, embed)}' alt='{alt}'>")
        scores = "".join(
            f"<tr><td>{escape(METRIC_LABELS.get(m, m))}</td><td>{image.scores[m]:.4f}</td></tr>"
            for m in report.metrics
        )
        parts.append(f"<table>{scores}</table>")
    parts.append(f"<div>planner: {escape(row.planner)} · merge: {escape(row.merge)}</div>")
    if row.recipe:
        parts.append(_recipe_links(row.recipe, out_dir))
    if row.experts:
        lines = "".join(
            f"<tr><td>{escape(e.name)}</td><td>{e.kind}</td><td>{_num(e.coefficient)}</td>"
            f"<td>{_num(e.merge_weight)}</td></tr>"
            for e in row.experts
        )
        parts.append(
            "<table><tr><th>expert</th><th>kind</th><th>coef.</th><th>weight</th></tr>"
            f"{lines}</table>"
        )
    else:
        parts.append("<div>no experts (base model)</div>")
    notes = [n for n in row.notes if n not in report.notes]  # the page says those once
    if notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in notes)
        parts.append(f"<ul class='notes'>{items}</ul>")
    parts.append("</figure>")
    return "".join(parts)


def _recipe_links(recipe: str, out_dir: Path) -> str:
    """Links to the row's recipe and its A1111 / ComfyUI exports (those on disk)."""
    stem = recipe.removesuffix(".recipe.json")
    files = (
        ("recipe", recipe),
        ("A1111", f"{stem}.a1111.txt"),
        ("ComfyUI", f"{stem}.comfyui.json"),
    )
    links = [
        f"<a href='{escape(path, quote=True)}'>{label}</a>"
        for label, path in files
        if (out_dir / path).is_file()
    ]
    return f"<div class='files'>{' · '.join(links)}</div>" if links else ""


def _off(title: str, text: str) -> str:
    return f"<figure class='card'>{title}<p class='off'>{escape(text)}</p></figure>"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _src(path: str, out_dir: Path, embed: bool) -> str:
    if not embed:
        return escape(path, quote=True)
    data = base64.b64encode((out_dir / path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"
