"""``diffgraph demo``: the main job on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graph.console import console

REAL_USE = """[bold]To use real weights and a real LLM[/]
  export DIFFGRAPH_BASE_MODEL=/path/to/v1-5-pruned-emaonly.safetensors   # or a diffusers folder
  export OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=... OPENAI_MODEL=qwen2.5:14b
  diffgraph crawl --source local --path ~/stable-diffusion-webui/models --ref-prompts prompts.txt
  diffgraph crawl --source civitai --base sd15 --types lora,checkpoint --max-experts 50
  diffgraph train-planner --prompts prompts.jsonl --env real --steps 500
  diffgraph chat"""


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="folder for images, recipes, gallery")] = Path(
        "out/demo"
    ),
    classic: Annotated[
        bool,
        typer.Option(
            "--classic", help="random tiny models and the SD-style catalogue, not the small world"
        ),
    ] = False,
) -> None:
    """Run everything end to end on the small trained world: crawl, planner, chat, benchmark."""
    from agents.demo.run import DemoConfig, run_demo
    from graph.outputs import check_output_dir

    check_output_dir(out, "--out")
    settings = ctx.obj
    config = DemoConfig(world=None) if classic else DemoConfig()
    if classic:
        settings = settings.model_copy(update={"data_dir": settings.data_dir / "classic"})
    report = run_demo(
        settings, out, say=lambda text: console.print(text, highlight=False), config=config
    )
    console.rule("DiffGraph demo finished")
    total = sum(report.seconds.values())
    console.print(f"stages (s): {report.seconds}  total {total:.0f} s")
    console.print(f"graph and traces: {report.data_dir} (traces in {report.data_dir / 'traces'})")
    console.print(f"chat images, recipes, A1111 / ComfyUI exports: {report.out_dir / 'chat'}")
    if report.benchmark:
        console.print(f"benchmark table: {report.benchmark['markdown']}")
        html = report.benchmark.get("gallery") or report.benchmark.get("html")  # classic / world
        console.print(f"HTML report and gallery: {html}")
    console.print(f"report: {report.out_dir / 'demo-report.json'}")
    console.print("[bold yellow]What ran on demo backends[/]")
    for part in report.demo_parts:
        console.print(f"  - {part}")
    if config.world is not None:
        from agents.demo.world import continue_commands

        console.print(continue_commands(report.base_model), highlight=False, soft_wrap=True)
    console.print(REAL_USE, highlight=False, soft_wrap=True)
    from agents.webui.cli import serve_hint

    console.print(serve_hint(report.data_dir), highlight=False, soft_wrap=True)
