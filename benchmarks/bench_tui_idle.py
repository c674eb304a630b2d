"""CPU cost of the console while idle with the Power pane open, against the session alone.

    python benchmarks/bench_tui_idle.py                 # demo session, 20 s per run, 80x24 and 200x50
    python benchmarks/bench_tui_idle.py --source replay --seconds 30

Each measurement runs in its own process: a Session (demo: simulated GPU and Ollama; or replay: a real H200 trace
looping) started in its background thread, then either nothing (baseline) or ClawApp run headless at the configured
4 Hz refresh with the Power pane in front. After a warm-up (by default long enough to fill the 2-minute chart
window, so that the charts hold a full window of samples as in steady use), the process CPU time over the window is
divided by the wall time. The console's cost is the difference: target < 3% of one core
(SPEC: TUI idle at 4 Hz refresh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRACE = ROOT / "tests" / "fixtures" / "traces" / "h200_decode_burst.jsonl.gz"
TARGET_PCT = 3.0


def start_session(source: str, store: Path):
    from claw_tui.config import load_config
    from claw_tui.session import Session, SessionOptions, SessionThread

    config = load_config(None)
    options = SessionOptions(
        demo=True, listen=("127.0.0.1", 0), store_path=store, replay_path=str(TRACE) if source == "replay" else None
    )
    runner = SessionThread(Session(config, options))
    runner.start()
    return runner


def measure(source: str, size: tuple[int, int] | None, seconds: float, warmup: float) -> dict:
    """CPU share of this process over `seconds` after `warmup`: the session alone, or with the console on top."""
    with tempfile.TemporaryDirectory() as tmp:
        runner = start_session(source, Path(tmp) / "sessions.db")
        try:
            if size is None:
                time.sleep(warmup)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                time.sleep(seconds)
                frames = None
            else:
                cpu0, wall0, frames = asyncio.run(run_console(runner.session, size, seconds, warmup))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            runner.stop()
    return {"cpu_s": cpu, "wall_s": wall, "core_pct": cpu / wall * 100, "chart_draws": frames}


async def run_console(session, size: tuple[int, int], seconds: float, warmup: float):
    from claw_tui.ui.app import ClawApp

    app = ClawApp(session)
    marks: dict = {}

    def start_window() -> None:
        marks["draws"] = app.query_one("#power-pane").chart_draws
        marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()
        app.set_timer(seconds, end_window)

    def end_window() -> None:
        marks["draws"] = app.query_one("#power-pane").chart_draws - marks["draws"]
        app.exit()

    app.call_later(lambda: app.set_timer(warmup, start_window))
    await app.run_async(headless=True, size=size)
    return marks["cpu"], marks["wall"], marks["draws"]


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("demo", "replay"), default="demo")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=125.0,
        help="seconds before measuring; past 120 s the Power pane's 2-minute window is full",
    )
    parser.add_argument("--sizes", default="80x24,200x50")
    parser.add_argument("--parallel", action="store_true", help="run the baseline and the sizes side by side")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.child:
        size = tuple(int(v) for v in args.size.split("x")) if args.size else None
        print(json.dumps(measure(args.source, size, args.seconds, args.warmup)))
        return 0
    common = ["--source", args.source, "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    sizes = args.sizes.split(",")
    # Independent processes, each measuring its own CPU time; side by side only when asked (on a machine with few
    # cores the runs then share caches and cores, which adds noise).
    with ThreadPoolExecutor(max_workers=len(sizes) + 1 if args.parallel else 1) as pool:
        baseline_run = pool.submit(run_child, common)
        size_runs = {size: pool.submit(run_child, [*common, "--size", size]) for size in sizes}
        baseline = baseline_run.result()
        runs = {size: future.result() for size, future in size_runs.items()}
    print(f"session alone ({args.source}): {baseline['core_pct']:.2f}% of a core over {baseline['wall_s']:.1f} s")
    results = {"source": args.source, "baseline": baseline, "console": {}}
    worst = 0.0
    for size in sizes:
        run = runs[size]
        cost = run["core_pct"] - baseline["core_pct"]
        worst = max(worst, cost)
        results["console"][size] = {**run, "console_pct": cost}
        print(
            f"console {size:>7}, Power pane, 4 Hz: {run['core_pct']:.2f}% total, "
            f"{cost:.2f}% for the console (target < {TARGET_PCT}%)"
        )
    results["worst_console_pct"] = worst
    print(f"worst: {worst:.2f}% of a core -> {'OK' if worst < TARGET_PCT else 'OVER TARGET'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
