"""``weights inspect`` speed on a ~1.8 MB LyCORIS LoKr file for SD 1.5 (every attention and
MLP linear of the UNet and text encoder, fp16 factors).

Each measurement runs in a fresh process (cold caches, as on the command line):
``inspect_expert`` alone (imports excluded), the full-size module table the old code built
on every inspect (diffusers + transformers models on the meta device, imports included),
safetensors' ``load_file`` of the same file (the floor) and ``diffgraph weights inspect``
end to end.

Run: .venv/bin/python bench/inspect_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TIMED = {
    "inspect_expert (imports excluded)": (
        "from tools.weights.inspect import inspect_expert\n"
        "t = time.perf_counter(); info = inspect_expert(PATH)\n"
        "assert info.format == 'lokr' and info.fits_full_size, info\n"
    ),
    "old path: build the SD 1.5 module table": (
        "t = time.perf_counter()\n"
        "from graph.records import BaseFamily\n"
        "from tools.weights.families import build_parameter_shapes\n"
        "build_parameter_shapes(BaseFamily.SD15)\n"
    ),
    "safetensors load_file (floor)": (
        "from safetensors.torch import load_file\nt = time.perf_counter(); load_file(PATH)\n"
    ),
}


def make_file(path: Path) -> Path:
    import torch

    from graph.records import BaseFamily
    from tools.weights.adapter import Adapter, AdapterModule
    from tools.weights.families import module_shapes
    from tools.weights.write import save_adapter

    generator = torch.Generator().manual_seed(0)
    modules = {}
    for name, shape in module_shapes(BaseFamily.SD15).items():
        if len(shape) != 2 or not any(s in name for s in ("attn", "ff.net", "mlp")):
            continue
        out, inp = shape
        a, b = (8 if out % 8 == 0 else 1), (8 if inp % 8 == 0 else 1)
        factors = {
            "w1": torch.randn(a, b, generator=generator),
            "w2_a": torch.randn(out // a, 12, generator=generator),
            "w2_b": torch.randn(12, inp // b, generator=generator),
        }
        modules[name] = AdapterModule("lokr", {k: v.half() for k, v in factors.items()}, 1.0)
    adapter = Adapter("lokr", BaseFamily.SD15, modules, {"ss_network_module": "lycoris.kohya"})
    return save_adapter(adapter, path)


def run_timed(code: str, path: Path) -> float:
    script = (
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); PATH = {str(path)!r}\n"
        f"{code}print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


def run_cli(path: Path) -> float:
    cli = Path(sys.executable).parent / "diffgraph"
    start = time.perf_counter()
    subprocess.run([str(cli), "weights", "inspect", str(path)], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = make_file(Path(folder) / "lokr.safetensors")
        results = {"file_bytes": path.stat().st_size}
        for label, code in TIMED.items():
            times = [run_timed(code, path) for _ in range(args.repeat)]
            results[label] = round(statistics.median(times), 3)
        times = [run_cli(path) for _ in range(args.repeat)]
        results["diffgraph weights inspect (end to end)"] = round(statistics.median(times), 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
