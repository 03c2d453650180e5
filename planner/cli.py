"""``diffgraph plan`` and ``diffgraph train-planner``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from graph.console import console, print_json, print_table
from planner.errors import PlannerError

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
ExpertsOption = Annotated[
    str | None,
    typer.Option(help="comma-separated expert ids: plan over exactly these (no selection)"),
]


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
    app.command("train-planner")(train_command)


def _ids(experts: str | None) -> list[str] | None:
    if experts is None:
        return None
    ids = [i.strip() for i in experts.split(",") if i.strip()]
    if not ids:
        raise PlannerError("--experts is empty: give comma-separated expert ids")
    return ids


def plan_command(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="the image prompt")],
    experts: ExpertsOption = None,
    planner: Annotated[
        Literal["learned", "equal", "random", "llm"],
        typer.Option(help="learned (the trained VGAE) or a baseline"),
    ] = "learned",
    checkpoint: Annotated[
        Path | None, typer.Option(help="trained planner (default: planner.checkpoint)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One coefficient per expert for PROMPT and the softmax merge weights they give."""
    import torch

    from graph.universal import UniversalGraph
    from planner.loading import make_planner
    from planner.planners import PlanRequest

    settings = ctx.obj
    with UniversalGraph(settings.graph) as graph:
        ids, text, selection = _ids(experts), prompt, None
        if ids is None:
            from agents.selection import make_context, select

            selection = select(prompt, make_context(settings, graph))
            ids, text = selection.expert_ids, selection.text
            if not ids:
                raise PlannerError(
                    f"the selection agent found no experts for {prompt!r}: add experts to the "
                    "graph, or give --experts"
                )
        chosen = make_planner(planner, settings, graph, checkpoint)
        request = PlanRequest(
            text, torch.from_numpy(graph.embedder.embed_one(text)), graph.subgraph(ids)
        )
        result = chosen.plan(request)
    if as_json:
        data = result.model_dump(mode="json")
        data["selection_mode"] = selection.mode if selection else "fixed"
        print_json(data)
        return
    print_table(
        f"plan ({result.planner}, {result.mode})",
        ["expert", "kind", "coefficient", "merge weight", "α", "β"],
        [
            (
                e.expert_id,
                e.kind,
                f"{e.coefficient:.4f}",
                f"{e.merge_weight:.4f}",
                "-" if e.alpha is None else f"{e.alpha:.3g}",
                "-" if e.beta is None else f"{e.beta:.3g}",
            )
            for e in result.experts
        ],
    )
    console.print(f"experts: {'selected by the agent' if selection else 'fixed (--experts)'}")
    for note in result.notes:
        console.print(f"[yellow]note[/]: {note}")


def train_command(
    ctx: typer.Context,
    prompts: Annotated[
        Path, typer.Option(help="training prompts (.txt lines or .jsonl with 'prompt')")
    ],
    steps: Annotated[int | None, typer.Option(help="total steps (default: planner.steps)")] = None,
    env: Annotated[
        Literal["real", "synthetic", "graph"],
        typer.Option(
            help="real: generate + score; synthetic: demo world with known optimum; graph: "
            "the synthetic reward over this graph's own experts"
        ),
    ] = "synthetic",
    out: Annotated[
        Path | None, typer.Option(help="checkpoint to write (default: planner.checkpoint)")
    ] = None,
    resume: Annotated[
        bool | None,
        typer.Option("--resume/--restart", help="continue the checkpoint at OUT, or start over"),
    ] = None,
    experts: ExpertsOption = None,
    limit: Annotated[int | None, typer.Option(help="use the first N prompts")] = None,
    refs: Annotated[
        int, typer.Option(help="synthetic: prompts used as the world's reference prompts")
    ] = 40,
    expert_features: Annotated[
        Literal["description", "zero", "learnable", "parameters"],
        typer.Option(help="ablation: expert node features"),
    ] = "description",
    edge_features: Annotated[
        Literal["calibration", "none", "learnable"],
        typer.Option(help="ablation: calibration edge features"),
    ] = "calibration",
    as_json: JsonFlag = False,
) -> None:
    """Train the planner with REINFORCE; writes the checkpoint, a reward CSV and a PNG plot."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from graph.outputs import check_output_file
    from graph.prompts import read_prompts
    from graph.universal import UniversalGraph
    from planner.loading import checkpoint_path
    from planner.trainer import curve_paths
    from planner.training import train_planner

    settings = ctx.obj
    total = steps or settings.planner.steps
    path = out or checkpoint_path(settings)
    check_output_file(path, "planner checkpoint")
    if path.exists() and resume is None:
        raise PlannerError(
            f"{path} exists: pass --resume to continue its training, --restart to start over, "
            "or --out for a new checkpoint"
        )
    texts = read_prompts(prompts, limit)
    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[reward]}"),
    )
    last: dict[str, float] = {}
    with (
        UniversalGraph(settings.graph) as graph,
        Progress(*columns, console=console, disable=as_json) as progress,
    ):
        task = progress.add_task("train", total=total, reward="")

        def step(row: dict[str, float]) -> None:
            last.update(row)
            progress.update(task, completed=row["step"], reward=f"reward {row['reward']:.4f}")

        state = train_planner(
            settings,
            graph,
            texts,
            env=env,
            steps=total,
            path=path,
            refs=refs,
            resume=bool(resume),
            experts=_ids(experts),
            expert_features=expert_features,
            edge_features=edge_features,
            on_step=step,
        )
    csv_path, png_path = curve_paths(path)
    summary = {
        "checkpoint": str(path),
        "step": state.step,
        "env": state.env,
        "synthetic": state.synthetic,
        "demo": state.demo,
        "prompts": state.prompts,
        "reward_csv": str(csv_path),
        "reward_png": str(png_path),
        "last_reward": last.get("reward"),
    }
    if as_json:
        print_json(summary)
        return
    console.print(f"checkpoint {path} at step {state.step} ({state.prompts} training prompts)")
    console.print(f"reward curve: {csv_path}, {png_path}")
    if state.demo:
        console.print(
            "[yellow]note[/]: trained on a demo reward "
            + ("(synthetic world)" if state.synthetic else "(tiny random weights)")
            + ": the planner is not meant for real images"
        )
