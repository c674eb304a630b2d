"""Gateway overhead, measured against `claw sim` running as its own process, in one run:

1. added latency of claw vs calling the simulator directly, p50/p99, at concurrency 1 and 16 — on the Ollama
   surface (/api/chat → Ollama backend) and the OpenAI surface (/v1/chat/completions → OpenAI-compatible backend);
2. the same for LiteLLM's proxy in front of the same simulator (installed into benchmarks/.venv-litellm by this
   script; not a dependency of claw), and the ratio of the two overheads;
3. streamed chunks per second relayed (and gateway CPU per chunk) against a very fast simulator.

Same-shaped requests everywhere: non-streamed chat answers of `--tokens` tokens from a simulator running at
`--speed` (so the backend is never the bottleneck at concurrency 16 on a small machine). Rounds alternate the
targets; the figures are medians over rounds of per-round differences against the direct run.

    python benchmarks/bench_gateway.py                 # everything (first run installs LiteLLM: minutes)
    python benchmarks/bench_gateway.py --skip-litellm --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gateway_load import (
    ROOT,
    Process,
    encode_request,
    free_port,
    load,
    median,
    start_claw,
    start_sim,
)

LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
TRACE = ROOT / "tests" / "fixtures" / "traces" / "h200_decode_burst.jsonl.gz"
MODEL = "llama3.2:3b"


def ensure_litellm() -> Path:
    litellm = LITELLM_VENV / "bin" / "litellm"
    if not litellm.exists():
        print("installing LiteLLM's proxy into benchmarks/.venv-litellm (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return litellm


def start_litellm(port: int, sim_url: str, workdir: Path) -> Process:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {sim_url}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  turn_off_message_logging: true\n"
        "general_settings:\n"
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )
    proxy = Process(
        "litellm",
        [
            str(ensure_litellm()),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
        cwd=workdir,
    )
    proxy.wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return proxy


def ollama_body(tokens: int, stream: bool = False) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something short."}],
        "stream": stream,
        "options": {"num_predict": tokens, "sim_tokens": tokens},
    }


def openai_body(tokens: int) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": tokens}


async def measure_overhead(
    targets: dict[str, tuple[int, bytes]], baseline: str, concurrency: int, requests: int, rounds: int
) -> dict:
    per_round: dict[str, list] = {name: [] for name in targets}
    for round_index in range(rounds):
        names = list(targets) if round_index % 2 == 0 else list(reversed(targets))
        for name in names:
            port, request = targets[name]
            run = await load(port, request, concurrency=concurrency, requests=requests)
            if run.errors:
                raise RuntimeError(f"{name}: {run.errors} failed requests")
            per_round[name].append(run)
    result = {}
    for name, runs in per_round.items():
        base = per_round[baseline]
        result[name] = {
            "p50_ms": round(median([r.p50_ms for r in runs]), 3),
            "p99_ms": round(median([r.p99_ms for r in runs]), 3),
            "rps": round(median([r.rps for r in runs]), 1),
            "overhead_p50_ms": round(median([r.p50_ms - b.p50_ms for r, b in zip(runs, base)]), 3),
            "overhead_p99_ms": round(median([r.p99_ms - b.p99_ms for r, b in zip(runs, base)]), 3),
        }
    return result


async def measure_streams(direct_port: int, claw_port: int, claw: Process, tokens: int, concurrency: int) -> dict:
    request = {
        name: encode_request(port, "/api/chat", ollama_body(tokens, stream=True))
        for name, port in (("direct", direct_port), ("claw", claw_port))
    }
    out = {}
    for name in ("direct", "claw", "direct", "claw"):
        port = direct_port if name == "direct" else claw_port
        cpu_before = claw.cpu_seconds()
        run = await load(port, request[name], concurrency=concurrency, requests=concurrency * 3, warmup=2)
        cpu = claw.cpu_seconds() - cpu_before
        entry = out.setdefault(name, {"chunks_per_s": [], "claw_cpu_us_per_chunk": []})
        entry["chunks_per_s"].append(run.chunks / run.elapsed_s)
        if name == "claw":
            entry["claw_cpu_us_per_chunk"].append(cpu / run.chunks * 1e6)
    return {
        name: {key: round(median(values), 1) for key, values in entry.items() if values} for name, entry in out.items()
    }


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"  {'target':<16}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'+p50 ms':>10}{'+p99 ms':>10}")
    for name, row in rows.items():
        print(
            f"  {name:<16}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}{row['rps']:>9.0f}"
            f"{row['overhead_p50_ms']:>10.3f}{row['overhead_p99_ms']:>10.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=1000.0, help="simulator speed for the overhead runs")
    parser.add_argument("--tokens", type=int, default=4, help="answer length of the overhead runs")
    parser.add_argument("--requests", type=int, default=600, help="requests per run at concurrency 1")
    parser.add_argument("--requests-16", type=int, default=1600, help="requests per run at concurrency 16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream-tokens", type=int, default=2000)
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--telemetry",
        choices=("replay", "none", "nvml"),
        default="replay",
        help="claw's telemetry: a replayed H200 trace (default), none, or the real GPU",
    )
    parser.add_argument("--gc-stats", action="store_true", help="record claw's garbage-collector pauses")
    parser.add_argument("-o", "--output", type=Path, help="write the results as JSON")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="claw-bench-"))
    processes: list[Process] = []
    results: dict = {}
    telemetry = {"telemetry": args.telemetry, "trace": TRACE}
    gc_files = {name: workdir / f"gc-{name}.json" for name in ("claw_ollama", "claw_openai")} if args.gc_stats else {}
    try:
        sim_port, fast_port = free_port(), free_port()
        processes.append(start_sim(sim_port, speed=args.speed))
        processes.append(start_sim(fast_port, speed=1000.0))
        sim_url = f"http://127.0.0.1:{sim_port}"
        ports = {name: free_port() for name in ("claw_ollama", "claw_openai", "claw_fast", "litellm")}
        processes.append(
            claw_ollama := start_claw(
                ports["claw_ollama"], sim_url, "ollama", workdir, gc_stats=gc_files.get("claw_ollama"), **telemetry
            )
        )
        processes.append(
            start_claw(
                ports["claw_openai"], sim_url, "openai", workdir, gc_stats=gc_files.get("claw_openai"), **telemetry
            )
        )
        processes.append(
            claw_fast := start_claw(ports["claw_fast"], f"http://127.0.0.1:{fast_port}", "ollama", workdir, **telemetry)
        )
        if not args.skip_litellm:
            processes.append(start_litellm(ports["litellm"], sim_url, workdir))

        native = ollama_body(args.tokens)
        chat = openai_body(args.tokens)
        ollama_targets = {
            "direct": (sim_port, encode_request(sim_port, "/api/chat", native)),
            "claw": (ports["claw_ollama"], encode_request(ports["claw_ollama"], "/api/chat", native)),
        }
        openai_targets = {
            "direct": (sim_port, encode_request(sim_port, "/v1/chat/completions", chat)),
            "claw": (ports["claw_openai"], encode_request(ports["claw_openai"], "/v1/chat/completions", chat)),
        }
        if not args.skip_litellm:
            openai_targets["litellm"] = (
                ports["litellm"],
                encode_request(ports["litellm"], "/v1/chat/completions", chat),
            )

        results.update(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "settings": vars(args) | {"output": str(args.output) if args.output else None},
            }
        )
        for concurrency, requests in ((1, args.requests), (16, args.requests_16)):
            for surface, targets in (("ollama", ollama_targets), ("openai", openai_targets)):
                rows = asyncio.run(measure_overhead(targets, "direct", concurrency, requests, args.rounds))
                results[f"{surface}_c{concurrency}"] = rows
                print_table(f"{surface} surface, concurrency {concurrency} ({requests} requests x {args.rounds})", rows)
                if "litellm" in rows:
                    claw_over = max(rows["claw"]["overhead_p50_ms"], 0.001)
                    ratio = rows["litellm"]["overhead_p50_ms"] / claw_over
                    results[f"{surface}_c{concurrency}"]["litellm_over_claw_p50"] = round(ratio, 1)
                    print(f"  LiteLLM's added p50 latency is {ratio:.1f}x claw's")
        for concurrency in (1, 8):
            streams = asyncio.run(
                measure_streams(fast_port, ports["claw_fast"], claw_fast, args.stream_tokens, concurrency)
            )
            results[f"stream_c{concurrency}"] = streams
            print(
                f"\nstreamed chunks/s, {concurrency} stream(s) of {args.stream_tokens} tokens: "
                f"direct {streams['direct']['chunks_per_s']:.0f}, claw {streams['claw']['chunks_per_s']:.0f} "
                f"({streams['claw']['claw_cpu_us_per_chunk']:.1f} us of gateway CPU per chunk)"
            )
        results["claw_ollama_cpu_s"] = round(claw_ollama.cpu_seconds(), 2)
    finally:
        for process in reversed(processes):
            process.stop()
    for name, path in gc_files.items():
        if path.exists():
            results[f"gc_{name}"] = json.loads(path.read_text())
            print(f"\ngarbage collector in {name}: {results[f'gc_{name}']}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
