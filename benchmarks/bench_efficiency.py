"""What the idle governor buys in the demo: idle power with it off vs on, and tokens/J of a bench run both ways.

    python benchmarks/bench_efficiency.py [--idle-window 20] [--requests 24] [--rate 0.4]

Runs on the simulated H200 (its power model follows the measured card: ~77 W bare idle, ~118 W with a resident
model at full clocks). Real time: the power dynamics (0.25 s rise, 1.7 s fall) do not speed up, so neither does
this benchmark (about three minutes with the defaults).

1. Idle power with a model resident: governor off, then on (downclocked), then deep idle (models unloaded), each
   measured over the same window from the session's own energy accounting (the gateway's /claw/v1/summary).
2. Two `claw bench` runs with the same seeded, bursty arrivals (Poisson, gaps like real traffic), one with the
   governor off and one with it on: session tokens/J (idle charged), tokens/J of the requests alone, TTFT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claw_tui.bench import (
    Bench,
    BenchConfig,
    build_bench_summary,
    claw_summary,
    gateway_records,
    synthetic_prompts,
)
from claw_tui.config import load_config
from claw_tui.export import compare, render_compare
from claw_tui.session import Session, SessionOptions, SessionThread

MODEL = "qwen3:8b"


def start(tmp: Path) -> SessionThread:
    config = load_config(None)
    config.telemetry.poll_interval_s = 0.1
    options = SessionOptions(demo=True, listen=("127.0.0.1", 0), store_path=tmp / "sessions.db", sim_speed=1.0)
    runner = SessionThread(Session(config, options))
    runner.start()
    return runner


def idle_power_over(client: httpx.Client, seconds: float) -> float:
    """Mean idle power over a window, from the session's idle energy and idle time before and after it."""
    before = client.get("/claw/v1/summary").json()["energy"]
    time.sleep(seconds)
    after = client.get("/claw/v1/summary").json()["energy"]
    return (after["idle_j"] - before["idle_j"]) / (after["idle_s"] - before["idle_s"])


def measure_idle(window_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runner = start(Path(tmp))
        try:
            client = httpx.Client(base_url=runner.session.gateway_url, timeout=60)
            client.post(
                "/api/chat",
                json={
                    "model": MODEL,
                    "stream": False,
                    "options": {"num_predict": 8},
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            time.sleep(4)  # let the power settle after the request
            off = idle_power_over(client, window_s)
            client.post("/claw/v1/governor", json={"enabled": True, "idle_after_s": 0.5})
            time.sleep(3)
            assert runner.session.governor_json()["state"] == "downclocked"
            on = idle_power_over(client, window_s)
            client.post("/claw/v1/governor", json={"enabled": True, "unload_after_s": 0.5})
            time.sleep(4)
            deep = idle_power_over(client, window_s)
            governor = client.get("/claw/v1/summary").json()["governor"]
            client.close()
        finally:
            runner.stop()
    return {"off": off, "on": on, "deep": deep, "governor": governor}


async def bench_once(url: str, governor_on: bool, requests: int, rate: float, idle_after: float) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.post("/claw/v1/governor", json={"enabled": governor_on, "idle_after_s": idle_after})
        cfg = BenchConfig(url=url, model=MODEL, workload="short", concurrency=4, requests=requests, rate=rate, seed=7)
        before = await claw_summary(client)
        bench = Bench(cfg, synthetic_prompts("short", seed=7))
        await bench.run()
        await asyncio.sleep(2.0)  # the idle tail after the last answer belongs to the run in both cases
        records = await gateway_records(client, {r.request_id for r in bench.results if r.request_id})
        after = await claw_summary(client)
    return build_bench_summary(cfg, bench, records, before, after, demo=True).to_json()


def measure_bench(requests: int, rate: float, idle_after: float) -> tuple[dict, dict]:
    runs = {}
    for governor_on in (False, True):  # a fresh simulator each: same arrivals, same model loads
        with tempfile.TemporaryDirectory() as tmp:
            runner = start(Path(tmp))
            try:
                url = runner.session.gateway_url
                httpx.post(
                    url + "/api/chat",
                    timeout=60,
                    json={  # load the model outside the measured window
                        "model": MODEL,
                        "stream": False,
                        "options": {"num_predict": 4},
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                )
                time.sleep(3)
                runs[governor_on] = asyncio.run(bench_once(url, governor_on, requests, rate, idle_after))
            finally:
                runner.stop()
    return runs[False], runs[True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-window", type=float, default=20.0, help="seconds of idle measured per state")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--rate", type=float, default=0.4, help="bench arrivals per second (bursty, Poisson)")
    parser.add_argument("--idle-after", type=float, default=1.0, help="governor idle_after_s in the bench runs")
    args = parser.parse_args()

    idle = measure_idle(args.idle_window)
    print(f"1. Idle power, simulated H200 with {MODEL} resident ({args.idle_window:g} s windows)")
    print(f"   governor off (full clocks)        {idle['off']:7.1f} W   (baseline)")
    print(
        f"   governor on (SM locked 345 MHz)   {idle['on']:7.1f} W   ratio {idle['on'] / idle['off']:.3f}, "
        f"saves {idle['off'] - idle['on']:.1f} W"
    )
    print(
        f"   deep idle (models unloaded too)   {idle['deep']:7.1f} W   ratio {idle['deep'] / idle['off']:.3f}, "
        f"saves {idle['off'] - idle['deep']:.1f} W"
    )
    print(
        f"   governor's own figures: idle {idle['governor']['idle_power_w_normal']} W normal, "
        f"{idle['governor']['idle_power_w_downclocked']} W downclocked"
    )

    off, on = measure_bench(args.requests, args.rate, args.idle_after)
    print(
        f"\n2. claw bench, {args.requests} short requests, Poisson arrivals {args.rate:g}/s, concurrency 4, "
        f"governor idle_after_s {args.idle_after:g}"
    )
    for label, run in (("governor off", off), ("governor on", on)):
        e, eff, g = run["energy"], run["efficiency"], run["governor"]
        print(
            f"   {label:13} {run['session']['duration_s']:6.1f} s  {e['total_j']:8.1f} J  "
            f"tokens/J {eff['tokens_per_joule']:.4f}  (requests alone {eff['active_tokens_per_joule']:.4f})  "
            f"idle {e['idle_power_w']:.1f} W  TTFT p50 {run['ttft_ms']['p50']:.0f} ms "
            f"p95 {run['ttft_ms']['p95']:.0f} ms  downclocked {g.get('downclocked_s') or 0:.1f} s"
        )
    ratio = on["efficiency"]["tokens_per_joule"] / off["efficiency"]["tokens_per_joule"]
    print(f"   tokens/J on/off ratio: {ratio:.3f}\n")
    print(render_compare(compare(off, on), "governor-off", "governor-on"), end="")


if __name__ == "__main__":
    main()
