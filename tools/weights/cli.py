"""``diffgraph weights …`` and ``diffgraph merge``: inspect, convert and merge expert files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graph.console import console, print_json, print_table

weights_app = typer.Typer(help="Inspect and convert expert weight files.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
PickleFlag = Annotated[
    bool,
    typer.Option("--allow-pickle", help="load .ckpt/.pt/.bin with torch.load(weights_only=True)"),
]


# help text is rich markup, where ``:x:`` is an emoji code: an empty span splits it
A1111_LORA = "<lora:x[not bold][/not bold]:0.7>"


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")
    app.command("merge")(merge)


@weights_app.command()
def inspect(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="expert file or folder")],
    allow_pickle: PickleFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Format, base family, modules, ranks, trigger words and hashes of an expert."""
    from tools.weights.inspect import inspect_expert

    info = inspect_expert(path, allow_pickle=allow_pickle or ctx.obj.allow_pickle)
    if as_json:
        print_json(info)
        return
    ranks = ", ".join(f"r{r}×{n}" if r else f"full×{n}" for r, n in info.ranks.items())
    fits = {None: "-", True: "yes", False: f"no ({len(info.unmatched)} unmatched)"}
    rows = [
        ("format", info.format),
        ("kind", info.kind),
        ("family", info.family.value if info.family else "unknown"),
        ("components", ", ".join(info.components)),
        ("modules" if info.kind == "peft" else "tensors", info.modules),
        ("ranks", ranks or "-"),
        ("parameters", f"{info.parameters:,}"),
        ("trigger words", ", ".join(info.trigger_words) or "-"),
        ("fits full-size model", fits[info.fits_full_size]),
        ("sha256", info.sha256),
        ("AutoV2", info.autov2),
        ("size", f"{info.size_bytes:,} bytes"),
        *info.kohya.items(),
    ]
    if info.demo:
        rows.append(("DEMO", info.demo))
    print_table(str(path), ["field", "value"], rows)


@weights_app.command()
def methods(as_json: JsonFlag = False) -> None:
    """Merge methods and their parameters."""
    from tools.weights.methods import REGISTRY

    data = [
        {
            "name": m.name,
            "checkpoints": m.checkpoints,
            "params": {k: repr(f.default) for k, f in m.params.model_fields.items()},
            "description": m.description,
        }
        for m in REGISTRY.values()
    ]
    if as_json:
        print_json(data)
        return
    print_table(
        "merge methods",
        ["name", "checkpoints as", "params", "description"],
        [
            (
                d["name"],
                d["checkpoints"],
                ", ".join(f"{k}={v}" for k, v in d["params"].items()) or "-",
                d["description"],
            )
            for d in data
        ],
    )


@weights_app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="diffusers folder or single-file checkpoint")],
    output: Annotated[Path, typer.Option("-o", "--output", help="single-file .safetensors")],
    dtype: Annotated[str | None, typer.Option(help="float32, float16 or bfloat16")] = None,
) -> None:
    """Export an SD 1.5 / SDXL checkpoint to one LDM-layout file (A1111 / ComfyUI)."""
    from graph.outputs import check_output_file
    from tools.weights.convert import export_single_file
    from tools.weights.stream import torch_dtype

    check_output_file(output, "-o")
    export_single_file(source, output, torch_dtype(dtype) if dtype else None)
    console.print(f"wrote {output}")


def merge(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="merged .safetensors")],
    ckpt: Annotated[
        list[str] | None,
        typer.Option(
            "--ckpt", help="checkpoint PATH:WEIGHT (repeatable; by default its share of the sum)"
        ),
    ] = None,
    lora: Annotated[
        list[str] | None,
        typer.Option("--lora", help="LoRA-type PATH:STRENGTH (repeatable; 1 when omitted)"),
    ] = None,
    method: Annotated[str, typer.Option(help="merge method (see `weights methods`)")] = "diffgraph",
    normalize: Annotated[
        str,
        typer.Option(
            help=f"what weights mean: strength (A1111 {A1111_LORA}: --lora x:0.7 applies x at "
            "strength 0.7; checkpoint weights are shares of a weighted sum), softmax (the "
            "paper's, used for the planner's coefficients: softmax within each kind, so a "
            "lone LoRA gets 1) or raw (every weight as given)"
        ),
    ] = "strength",  # tools.weights.plan.USER_NORMALIZE (not imported: it loads torch)
    param: Annotated[
        list[str] | None, typer.Option("--param", help="method parameter KEY=VALUE (repeatable)")
    ] = None,
    base: Annotated[
        Path | None, typer.Option(help="base checkpoint (LoRA-only and task-vector merges)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--plan", help="merge plan YAML/JSON (instead of options)")
    ] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, float16 or bfloat16")] = None,
    title: Annotated[
        str | None, typer.Option(help="modelspec.title of the merged file (default: its name)")
    ] = None,
    allow_pickle: PickleFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Merge checkpoints and LoRAs into one single-file .safetensors (streamed).

    Weights mean what they mean in A1111: --lora X:0.5 applies X at strength 0.5, and
    --ckpt A:0.7 --ckpt B:0.3 is a 70/30 weighted sum (--normalize softmax for the paper's
    softmax, which the planner's coefficients use).
    """
    from graph.outputs import check_output_file
    from tools.weights.plan import MergePlan, plan_from_options
    from tools.weights.stream import merge_to_file

    check_output_file(output, "-o")
    if config is not None:
        plan = MergePlan.from_file(config)
    else:
        plan = plan_from_options(ckpt or [], lora or [], method, normalize, param or [], base)
    report = merge_to_file(
        plan, output, allow_pickle=allow_pickle or ctx.obj.allow_pickle, dtype=dtype, title=title
    )
    if as_json:
        print_json(report.__dict__)
        return
    console.print(
        f"wrote {report.output} ({report.family}, {report.tensors} tensors, method "
        f"{plan.method}, recipe {report.recipe_hash[:12]})"
    )
