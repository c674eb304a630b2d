"""Gateway latency with the console open vs headless.

The console (`claw`) runs the Session — gateway included — on its own event loop in a background thread
(`SessionThread`), while Textual renders on the main thread; both share one interpreter lock. This benchmark runs
that arrangement in a child process twice — once with the console app rendering (headless Textual driver, the Power
pane's live graphs refreshing at 4 Hz), once without it — and measures, from this process, the latency of
same-shaped requests through the gateway against `claw sim` (a third process), plus direct calls for reference.

    python benchmarks/bench_gateway_tui.py
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

from benchmarks.gateway_load import (
    ROOT,
    Process,
    encode_request,
    free_port,
    load,
    median,
    start_sim,
)

TRACE = ROOT / "tests" / "fixtures" / "traces" / "h200_decode_burst.jsonl.gz"
MODEL = "llama3.2:3b"


# ---- the child: a console face (or none) over a Session in a thread --------------------------------------------


def serve_face(port: int, sim_url: str, with_tui: bool, workdir: Path) -> None:
    from claw_tui.config import BackendConfig, load_config
    from claw_tui.session import Session, SessionOptions, SessionThread

    config = load_config(None)
    config.backends = [BackendConfig(name="sim", kind="ollama", url=sim_url)]
    config.telemetry.source = "replay"
    config.telemetry.replay_file = str(TRACE)
    config.gateway.max_in_flight = 256
    session = Session(config, SessionOptions(listen=("127.0.0.1", port), store_path=workdir / f"s-{port}.db"))
    runner = SessionThread(session)
    runner.start()
    from claw_tui.runtime import freeze_startup_heap

    freeze_startup_heap()  # as `claw` does
    try:
        if with_tui:
            asyncio.run(_run_console(session))
        else:
            while True:
                time.sleep(3600)
    finally:
        runner.stop()


async def _run_console(session) -> None:
    from claw_tui.ui.app import ClawApp

    app = ClawApp(session, refresh_hz=4.0)
    async with app.run_test(size=(200, 60), headless=True) as pilot:
        await pilot.pause(0.5)
        while True:  # the Power pane (the first) stays in front: its graphs are the heaviest to draw
            await asyncio.sleep(1)


# ---- the parent: measure ---------------------------------------------------------------------------------------


async def measure(targets: dict[str, int], body: dict, concurrency: int, requests: int, rounds: int) -> dict:
    runs: dict[str, list] = {name: [] for name in targets}
    for index in range(rounds):
        order = list(targets) if index % 2 == 0 else list(reversed(targets))
        for name in order:
            port = targets[name]
            runs[name].append(
                await load(port, encode_request(port, "/api/chat", body), concurrency=concurrency, requests=requests)
            )
    base = runs["direct"]
    return {
        name: {
            "p50_ms": round(median([r.p50_ms for r in rs]), 3),
            "p99_ms": round(median([r.p99_ms for r in rs]), 3),
            "overhead_p50_ms": round(median([r.p50_ms - b.p50_ms for r, b in zip(rs, base)]), 3),
            "overhead_p99_ms": round(median([r.p99_ms - b.p99_ms for r, b in zip(rs, base)]), 3),
        }
        for name, rs in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=1000.0)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--requests-16", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-o", "--output", type=Path)
    parser.add_argument("--face", choices=("tui", "headless"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.face:
        serve_face(args.port, args.sim_url, args.face == "tui", args.workdir)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="claw-bench-tui-"))
    processes: list[Process] = []
    try:
        sim_port = free_port()
        processes.append(start_sim(sim_port, speed=args.speed))
        sim_url = f"http://127.0.0.1:{sim_port}"
        ports = {"headless": free_port(), "tui": free_port()}
        faces = {}
        for face, port in ports.items():
            faces[face] = Process(
                f"face-{face}",
                [
                    sys.executable,
                    __file__,
                    "--face",
                    face,
                    "--port",
                    str(port),
                    "--sim-url",
                    sim_url,
                    "--workdir",
                    str(workdir),
                ],
            )
            faces[face].wait_http(f"http://127.0.0.1:{port}/api/version")
            processes.append(faces[face])
        time.sleep(2)  # the console's first frames
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say something short."}],
            "stream": False,
            "options": {"num_predict": args.tokens, "sim_tokens": args.tokens},
        }
        targets = {"direct": sim_port, "headless": ports["headless"], "tui": ports["tui"]}
        results: dict = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "settings": {k: v for k, v in vars(args).items() if k not in ("face", "output")},
        }
        for concurrency, requests in ((1, args.requests), (16, args.requests_16)):
            cpu_before = {face: p.cpu_seconds() for face, p in faces.items()}
            rows = asyncio.run(measure(targets, body, concurrency, requests, args.rounds))
            idle_cpu = {face: round(p.cpu_seconds() - cpu_before[face], 2) for face, p in faces.items()}
            results[f"c{concurrency}"] = rows
            print(f"\nconcurrency {concurrency} ({requests} requests x {args.rounds} rounds)")
            print(f"  {'face':<10}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>10}{'+p99 ms':>10}")
            for name, row in rows.items():
                print(
                    f"  {name:<10}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}{row['overhead_p50_ms']:>10.3f}"
                    f"{row['overhead_p99_ms']:>10.3f}"
                )
            print(f"  process CPU during the runs (s): {idle_cpu}")
        cpu0 = {face: p.cpu_seconds() for face, p in faces.items()}
        time.sleep(5)
        idle = {face: round((p.cpu_seconds() - cpu0[face]) / 5 * 100, 1) for face, p in faces.items()}
        results["idle_cpu_pct"] = idle
        print(f"\nidle CPU of each face (% of a core): {idle}")
        if args.output:
            args.output.write_text(json.dumps(results, indent=2))
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
