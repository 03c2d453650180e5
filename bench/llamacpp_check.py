"""The Expert Selection Agent against a real llama.cpp OpenAI-compatible server (issue 15).

No model hub is reachable, so the model is made here: a tiny llama-architecture GGUF
(2 layers, hidden 64, a byte-level BPE vocabulary learnt from the catalogue's text,
seeded random weights, about 1 MB), written byte for byte by :func:`write_tiny_gguf` (no
``gguf`` package needed).
``llama-cpp-python[server]`` is *not* a project dependency: build it into a scratch folder
and point ``--llamacpp`` (or ``DIFFGRAPH_LLAMACPP``) at it::

    CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --target /tmp/llamacpp 'llama-cpp-python[server]'
    python -m bench.llamacpp_check [--split tune] [--limit N] [--write]

The script starts ``python -m llama_cpp.server`` on a free port, then runs the selection
agent over the labelled prompts of ``evals/selection_needs.py`` (aggregate figures only):

- ``no-llm``: the need-aware no-LLM policy (the bar every LLM mode is compared with);
- ``json_schema``: the project's default structured method; llama-cpp-python's server takes
  only ``json_object`` and answers HTTP 500, so the client switches to ``json_mode`` (a generic
  JSON grammar on the server);
- ``function_calling``: a forced tool call, which llama-cpp-python turns into a grammar
  built from the schema itself;
- ``unconstrained``: the same server behind a local proxy that drops ``response_format`` and
  ``tools``, as servers that ignore them do: free text from the model.

A random model's answers are garbage by design: every step must either be answered with a
valid reply or fall back to the no-LLM policy, and say so in the result and the trace.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGET = Path(os.environ.get("DIFFGRAPH_LLAMACPP", "/tmp/llamacpp"))
MODEL_FILE = "tiny-llama-bpe.gguf"
MODES = ("no-llm", "json_schema", "function_calling", "unconstrained")
SECRET = "sk-llamacpp-check-0123456789abcdef"  # must never reach a trace
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# -- the tiny GGUF ---------------------------------------------------------------------

_U32, _I32, _F32, _STR, _ARR = 4, 5, 6, 8, 9  # GGUF value types
_ALIGN = 32


def _corpus() -> str:
    """Text the merges are learnt from: the catalogue's descriptions, the agent's system
    prompts and schemas (never the labelled evaluation prompts)."""
    from agents.selection import prompts
    from agents.selection.schemas import FilterDecision, PromptAnalysis
    from evals.selection_needs import catalogue
    from tools.llm.structured import schema_instruction

    parts = [prompts.ANALYSIS_SYSTEM, prompts.FILTER_SYSTEM]
    parts += [schema_instruction(s) for s in (PromptAnalysis, FilterDecision)]
    for expert in catalogue():
        parts += [expert.name, expert.description, *expert.trigger_words, *expert.tags]
    return "\n".join(parts)


def learn_merges(text: str, count: int) -> list[str]:
    """Byte-level BPE merges (GPT-2 pre-tokenisation), most frequent pair first."""
    import regex

    pattern = regex.compile(
        r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    )
    from tools.tiny.tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    words = Counter(
        tuple(alphabet[b] for b in piece.encode("utf-8")) for piece in pattern.findall(text)
    )
    merges: list[str] = []
    for _ in range(count):
        pairs: Counter = Counter()
        for word, n in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        (a, b), n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if n < 2:
            break
        merges.append(f"{a} {b}")
        merged = Counter()
        for word, m in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += m
        words = merged
    return merges


def tiny_vocab(merges: int = 1500) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types (1 normal, 3 control) and merges of a byte-level BPE vocabulary:
    256 bytes, the merged pieces, three control tokens (ChatML)."""
    from tools.tiny.tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    tokens = [alphabet[b] for b in range(256)]
    pairs = learn_merges(_corpus(), merges)
    tokens += list(
        dict.fromkeys(p.replace(" ", "") for p in pairs if p.replace(" ", "") not in tokens)
    )
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * len(tokens) + [3] * len(specials)
    return tokens + specials, types, pairs


def _gguf_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _gguf_value(value: Any) -> bytes:
    if isinstance(value, str):
        return struct.pack("<I", _STR) + _gguf_string(value)
    if isinstance(value, float):
        return struct.pack("<If", _F32, value)
    if isinstance(value, int):
        return struct.pack("<II", _U32, value)
    if isinstance(value, tuple) and value[0] == "i32":  # ("i32", [..])
        return struct.pack("<IIQ", _ARR, _I32, len(value[1])) + struct.pack(
            f"<{len(value[1])}i", *value[1]
        )
    if isinstance(value, list):
        return struct.pack("<IIQ", _ARR, _STR, len(value)) + b"".join(map(_gguf_string, value))
    raise TypeError(f"no GGUF encoding for {value!r}")


def write_tiny_gguf(
    path: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, ff: int = 128,
    context: int = 32768, seed: int = 0,
) -> Path:  # fmt: skip
    """A llama-architecture GGUF (v3, float32) with seeded random weights."""
    import numpy as np

    tokens, types, merges = tiny_vocab()
    eos = tokens.index("<|im_end|>")
    meta: dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": "diffgraph tiny random llama",
        "general.alignment": _ALIGN,
        "llama.context_length": context,
        "llama.embedding_length": hidden,
        "llama.block_count": layers,
        "llama.feed_forward_length": ff,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": heads,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.rope.dimension_count": hidden // heads,
        "llama.vocab_size": len(tokens),
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": ("i32", types),
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.eos_token_id": eos,
        "tokenizer.chat_template": CHATML,
    }
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5 / np.sqrt(shape[-1])).astype(np.float32)

    tensors = {"token_embd.weight": w(len(tokens), hidden)}
    for i in range(layers):
        tensors |= {
            f"blk.{i}.attn_norm.weight": np.ones(hidden, np.float32),
            f"blk.{i}.attn_q.weight": w(hidden, hidden),
            f"blk.{i}.attn_k.weight": w(hidden, hidden),
            f"blk.{i}.attn_v.weight": w(hidden, hidden),
            f"blk.{i}.attn_output.weight": w(hidden, hidden),
            f"blk.{i}.ffn_norm.weight": np.ones(hidden, np.float32),
            f"blk.{i}.ffn_gate.weight": w(ff, hidden),
            f"blk.{i}.ffn_up.weight": w(ff, hidden),
            f"blk.{i}.ffn_down.weight": w(hidden, ff),
        }
    tensors["output_norm.weight"] = np.ones(hidden, np.float32)
    tensors["output.weight"] = w(len(tokens), hidden)

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
    for key, value in meta.items():
        out += _gguf_string(key) + _gguf_value(value)
    offset, blobs = 0, []
    for name, array in tensors.items():
        dims = array.shape[::-1]  # GGUF lists the fastest-varying dimension first
        out += _gguf_string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, 0, offset)
        blob = array.tobytes()
        blob += b"\0" * (-len(blob) % _ALIGN)
        blobs.append(blob)
        offset += len(blob)
    out += b"\0" * (-len(out) % _ALIGN)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(out) + b"".join(blobs))
    tmp.replace(path)
    return path


# -- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read())


@contextlib.contextmanager
def llama_server(
    model: Path, target: Path, log: Path, n_ctx: int, threads: int, wait_s: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m llama_cpp.server`` on a free port; yields its ``/v1`` base URL and process."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(":")
    env["OMP_NUM_THREADS"] = str(threads)
    libs = target / "llama_cpp" / "lib"  # a hand-assembled target's libraries find each other
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libs), env.get("LD_LIBRARY_PATH", "")])
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--model_alias", "tiny-llama", "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--n_batch", "512", "--seed", "0",
    ]  # fmt: skip
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"llama_cpp.server exited with {proc.returncode}:\n{tail}")
            try:
                _get(base + "/models")
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise SystemExit(f"llama_cpp.server did not answer in {wait_s:.0f} s") from None
                time.sleep(0.5)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Strip(BaseHTTPRequestHandler):
    """Forwards to ``upstream`` without ``response_format`` / ``tools`` (a server that
    ignores them)."""

    upstream = ""

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self, body: bytes | None) -> None:
        request = urllib.request.Request(
            self.upstream + self.path.removeprefix("/v1"),
            data=body,
            method=self.command,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as reply:
                status, data = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        for key in ("response_format", "tools", "tool_choice"):
            body.pop(key, None)
        self._forward(json.dumps(body).encode())


@contextlib.contextmanager
def stripping_proxy(upstream: str) -> Iterator[str]:
    handler = type("Strip", (_Strip,), {"upstream": upstream})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


# -- the runs ----------------------------------------------------------------------------


def run_mode(mode: str, base_url: str | None, graph, items, tmp: Path, llm_overrides: dict) -> dict:
    """Select every prompt in one mode; the rows and what the trace says."""
    from agents.selection import make_context
    from evals.selection_needs import _row
    from tools.settings import LLMSettings, Settings
    from tools.tracing import TraceWriter, read_trace

    llm = LLMSettings()
    if mode != "no-llm":
        method = "json_schema" if mode == "unconstrained" else mode
        llm = LLMSettings(
            base_url=base_url,
            model="tiny-llama",
            api_key=SECRET,
            structured_method=method,
            **llm_overrides,
        )
    settings = Settings(data_dir=tmp / "data", llm=llm)
    tracer = TraceWriter(tmp / "traces", "selection", f"llamacpp-{mode}", [SECRET])
    ctx = make_context(settings, graph, tracer)
    rows = []
    for item in items:
        start = time.perf_counter()
        row = _row(item, ctx)
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
    tracer.close()
    events = read_trace(tracer.path)
    text = tracer.path.read_text()
    return {
        "rows": rows,
        "trace_fallbacks": Counter(e.node for e in events if e.event == "fallback"),
        "trace_run_modes": Counter(e.mode for e in events if e.event == "run_end"),
        "llm_calls": [e.llm for e in events if e.event == "llm_call"],
        "errors": Counter(
            (e.error or "")[:70] for e in events if e.event == "fallback"
        ).most_common(3),
        "secret_in_trace": SECRET in text,
        "downgraded": any(
            e.event == "node" and (e.data or {}).get("structured_method") == "json_mode"
            for e in events
        ),
    }


def summary(mode: str, out: dict, reference: list[dict] | None) -> dict[str, Any]:
    from evals.selection_needs import metrics

    rows = out["rows"]
    steps = Counter((s, m) for r in rows for s, m in r["step_modes"].items())
    fell = {s: n for (s, m), n in steps.items() if m == "fallback"}
    answered = sum(n for (_, m), n in steps.items() if m == "llm")
    trace = out["trace_fallbacks"]
    walls = sorted(r["wall_s"] for r in rows)
    same = (
        sum(a["selected"] == b["selected"] for a, b in zip(rows, reference, strict=True))
        if reference
        else len(rows)
    )
    return {
        "mode": mode,
        "answered": answered,
        "steps": sum(n for (_, m), n in steps.items() if m != "no-llm"),
        "fell": fell,
        "trace_agrees": all(trace.get(s, 0) == n for s, n in fell.items())
        and sum(trace.values()) == sum(fell.values())
        and out["trace_run_modes"] == Counter(r["mode"] for r in rows),
        "calls": len(out["llm_calls"]),
        "valid_calls": sum(c.valid for c in out["llm_calls"]),
        "metrics": metrics(rows),
        "median_s": statistics.median(walls),
        "max_s": walls[-1],
        "same": same,
        "prompts": len(rows),
        "errors": out["errors"],
        "secret_in_trace": out["secret_in_trace"],
        "downgraded": out["downgraded"],
        "server_died": out.get("server_died", False),
    }


def table(summaries: list[dict]) -> str:
    from evals.benchmarks_md import table as md_table

    rows = []
    for s in summaries:
        m = s["metrics"]
        fell = ", ".join(f"{k} {v}" for k, v in sorted(s["fell"].items())) or "0"
        rows.append(
            [
                s["mode"],
                f"{s['answered']}/{s['steps']}" if s["steps"] else "-",
                fell,
                ("yes" if s["trace_agrees"] else "**no**") if s["steps"] else "-",
                f"{s['valid_calls']}/{s['calls']}" if s["calls"] else "-",
                f"{m['precision']:.2f}",
                f"{m['recall']:.2f}",
                f"{m['wrong']:.0%}",
                f"{m['abstention']:.0%}",
                f"{s['same']}/{s['prompts']}",
                f"{s['median_s']:.2f} / {s['max_s']:.1f}",
            ]
        )
    columns = [
        "mode", "LLM steps answered", "fell back (per step)", "trace agrees",
        "valid replies / requests", "precision", "recall", "wrong", "abstention",
        "same as no-LLM", "s per select (median / max)",
    ]  # fmt: skip
    return md_table(columns, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--llamacpp",
        type=Path,
        default=DEFAULT_TARGET,
        help="folder llama-cpp-python[server] was installed into (--target)",
    )
    parser.add_argument(
        "--model-dir", type=Path, default=Path(tempfile.gettempdir()) / "dg-llamacpp"
    )
    parser.add_argument(
        "--split",
        choices=["tune", "both"],
        default="tune",
        help="tune: the tuning half; both: both halves, aggregate figures only",
    )
    parser.add_argument("--limit", type=int, default=0, help="first N of each kind (0: all)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--max-tokens", type=int, help="llm.max_tokens (default: the project's)")
    parser.add_argument("--timeout", type=float, help="llm.timeout_s (default: the project's)")
    parser.add_argument("--http-retries", type=int, help="llm.http_retries (default: project's)")
    parser.add_argument("--n-ctx", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    from evals.selection_needs import KINDS, catalogue, load
    from graph.config import GraphConfig
    from graph.universal import UniversalGraph

    items = load()
    if args.split == "tune":
        items = [i for i in items if i.split == "tune"]
    if args.limit:
        items = [i for k in KINDS for i in [i for i in items if i.kind == k][: args.limit]]
    modes = [m for m in args.modes.split(",") if m]
    if modes[0] != "no-llm":
        modes.insert(0, "no-llm")
    model = args.model_dir / MODEL_FILE
    if not model.exists():
        write_tiny_gguf(model)
    overrides = {
        k: v
        for k, v in (
            ("max_tokens", args.max_tokens),
            ("timeout_s", args.timeout),
            ("http_retries", args.http_retries),
        )
        if v is not None
    }
    load_avg = os.getloadavg()[0]
    summaries = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        graph = UniversalGraph(GraphConfig(data_dir=tmp / "graph"))
        graph.add_experts(catalogue())
        reference = None
        for mode in modes:  # a fresh server per mode: a crash in one spoils no other
            started = time.perf_counter()
            log = args.model_dir / f"server-{mode}.log"
            with llama_server(model, args.llamacpp, log, args.n_ctx, args.threads) as server:
                base, proc = server
                if mode == "unconstrained":
                    with stripping_proxy(base) as proxied:
                        out = run_mode(mode, proxied, graph, items, tmp, overrides)
                else:
                    out = run_mode(mode, base, graph, items, tmp, overrides)
                out["server_died"] = proc.poll() is not None
            summaries.append(summary(mode, out, reference))
            reference = reference or out["rows"]
            print(f"{mode}: {len(items)} prompts in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)  # fmt: skip
        graph.close()
    text = report(summaries, items, args, model, load_avg)
    print(text)
    if args.write:
        from evals.benchmarks_md import write_section

        command = "python -m bench.llamacpp_check --write"
        write_section("llamacpp", "Selection against a real llama.cpp server (issue 15)",
                      command, text)  # fmt: skip


def report(summaries: list[dict], items, args, model: Path, load: float) -> str:
    from tools.settings import LLMSettings

    llm = LLMSettings()
    llm_line = (
        f"max_tokens {args.max_tokens or llm.max_tokens}, "
        f"timeout {args.timeout or llm.timeout_s:g} s, "
        f"http_retries {llm.http_retries if args.http_retries is None else args.http_retries}, "
        f"max_schema_retries {llm.max_schema_retries}"
    )
    halves = "the tuning half" if args.split == "tune" else "both halves pooled"
    notes = []
    downgraded = "the server rejected json_schema, the client switched to json_mode; "
    for s in summaries[1:]:
        errors = "; ".join(f"{n}× “{e}”" for e, n in s["errors"]) or "none"
        notes.append(
            f"- `{s['mode']}`: {downgraded if s['downgraded'] else ''}"
            f"{'**the server process died during the run**; ' if s['server_died'] else ''}"
            f"commonest fallback reasons: {errors}; "
            f"API key in the trace: {'**yes**' if s['secret_in_trace'] else 'no'}."
        )
    return (
        f"llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, 1 thread, "
        f"n_ctx {args.n_ctx}) serving a tiny llama-architecture GGUF made by the script "
        f"({model.stat().st_size / 1e6:.1f} MB: 2 layers, hidden 64, byte-level BPE, "
        f"seeded random weights), over {len(items)} labelled prompts of "
        f"`evals/data/selection_needs.jsonl` ({halves}), LLM settings {llm_line}. "
        f"A random model answers garbage: the check is that each LLM step either gets a valid "
        f"reply or falls back to the no-LLM policy, says so in the result and in the trace, "
        f"and that selection quality holds.\n\n"
        + table(summaries)
        + "\n\n"
        + "\n".join(notes)
        + f"\n\nAnswered = the step used a valid LLM reply. Precision/recall/wrong/abstention "
        f"pooled as in the need-aware selection section. Load average {load:.1f} when the "
        f"run started (a training job shared the 2 cores): latencies are upper bounds."
    )


if __name__ == "__main__":
    main()
