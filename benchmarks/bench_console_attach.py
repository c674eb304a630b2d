"""What an open console costs the gateway: headless vs an attached console vs the in-process console.

Three faces, each a child process running the Session on its own loop in a thread (as `claw` and `claw serve`
do) in front of the same `claw sim`, with replayed H200 telemetry at 50 Hz:
- headless: no console at all (the baseline);
- attached: no console in the process, but a console in another process attached through /claw/v1/events
  (the Power pane in front, redrawing at 4 Hz);
- in-process: the console rendering in the same process (the Power pane, 4 Hz), sharing the interpreter lock.
The load (concurrency 16, same-shaped requests) runs against each in turn, interleaved over several rounds in one
run, and the p50/p99 are printed with their ratio to headless.

    python benchmarks/bench_console_attach.py [--rounds 5] [-o results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_gateway_tui import MODEL, serve_face
from benchmarks.gateway_load import Process, encode_request, free_port, load, median, start_sim

FACES = ("headless", "attached", "in-process")


def run_attached_console(url: str) -> None:
    """A console in this process attached to the service at `url`, the Power pane in front, until killed."""
    from claw_tui.console.remote import RemoteSource, probe
    from claw_tui.ui.app import ClawApp

    async def console() -> None:
        app = ClawApp(source=RemoteSource(url, None, probe(url)), refresh_hz=4.0)
        async with app.run_test(size=(200, 60), headless=True) as pilot:
            while not app.panes_ready:
                await pilot.pause(0.1)
            while True:
                await asyncio.sleep(1)

    asyncio.run(console())


async def measure(ports: dict[str, int], body: dict, concurrency: int, requests: int, rounds: int) -> dict:
    runs: dict[str, list] = {name: [] for name in ports}
    for index in range(rounds):
        order = list(ports)[index % len(ports) :] + list(ports)[: index % len(ports)]  # each face goes first in turn
        for name in order:
            port = ports[name]
            request = encode_request(port, "/api/chat", body)
            runs[name].append(await load(port, request, concurrency=concurrency, requests=requests))
    base = runs["headless"]
    rows = {}
    for name, rs in runs.items():
        p50, p99 = median([r.p50_ms for r in rs]), median([r.p99_ms for r in rs])
        rows[name] = {
            "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3),
            "p50_ratio": round(median([r.p50_ms / b.p50_ms for r, b in zip(rs, base)]), 3),
            "p99_ratio": round(median([r.p99_ms / b.p99_ms for r, b in zip(rs, base)]), 3),
        }
    return rows


def start_face(name: str, port: int, sim_url: str, workdir: Path) -> Process:
    face = "tui" if name == "in-process" else "headless"
    args = [sys.executable, __file__, "--face", face, "--port", str(port), "--sim-url", sim_url]
    process = Process(f"face-{name}", [*args, "--workdir", str(workdir)])
    process.wait_http(f"http://127.0.0.1:{port}/api/version")
    return process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=1000.0)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--requests", type=int, default=1600, help="requests per face and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--face", choices=("tui", "headless"), help=argparse.SUPPRESS)
    parser.add_argument("--console", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.face:
        serve_face(args.port, args.sim_url, args.face == "tui", args.workdir)
        return 0
    if args.console:
        run_attached_console(args.console)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="claw-bench-console-"))
    processes: list[Process] = []
    try:
        sim_port = free_port()
        processes.append(start_sim(sim_port, speed=args.speed))
        sim_url = f"http://127.0.0.1:{sim_port}"
        ports = {name: free_port() for name in FACES}
        faces = {name: start_face(name, port, sim_url, workdir) for name, port in ports.items()}
        processes += faces.values()
        console = Process(
            "attached-console", [sys.executable, __file__, "--console", f"http://127.0.0.1:{ports['attached']}"]
        )
        processes.append(console)
        time.sleep(4)  # the consoles' first frames, the attached one's state loaded
        if console.proc.poll() is not None:
            raise RuntimeError(f"the attached console exited; see {console.log_path}")
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say something short."}],
            "stream": False,
            "options": {"num_predict": args.tokens, "sim_tokens": args.tokens},
        }
        cpu_before = {name: p.cpu_seconds() for name, p in [*faces.items(), ("attached console", console)]}
        rows = asyncio.run(measure(ports, body, args.concurrency, args.requests, args.rounds))
        cpu = {
            name: round(p.cpu_seconds() - cpu_before[name], 2)
            for name, p in [*faces.items(), ("attached console", console)]
        }
        print(f"\ngateway latency at concurrency {args.concurrency} ({args.requests} requests x {args.rounds} rounds,")
        print("interleaved; ratios are medians of per-round ratios to headless)")
        print(f"  {'face':<12}{'p50 ms':>9}{'p99 ms':>9}{'p50 ratio':>11}{'p99 ratio':>11}")
        for name, row in rows.items():
            latency = f"{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
            print(f"  {name:<12}{latency}{row['p50_ratio']:>11.3f}{row['p99_ratio']:>11.3f}")
        print(f"  CPU seconds during the runs: {cpu}")
        if args.output:
            results = {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "settings": {k: v for k, v in vars(args).items() if k not in ("face", "console", "output")},
                "rows": rows,
                "cpu_s": cpu,
            }
            args.output.write_text(json.dumps(results, indent=2, default=str))
    except Exception:
        for process in processes:
            print(f"--- {process.name} (exit {process.proc.poll()}):\n{process.log_tail()}", file=sys.stderr)
        raise
    finally:
        for process in reversed(processes):
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
