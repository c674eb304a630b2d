"""CPU per non-streamed request in claw's core, against a baseline checkout measured in the same run.

    python benchmarks/bench_request_cpu.py                              # this checkout alone
    python benchmarks/bench_request_cpu.py --baseline /path/to/older    # before/after, interleaved rounds

Each measurement is its own process: the core (`Session`, as `claw serve` runs it, with the simulator's GPU as
telemetry) in front of `claw sim` (its own process, fast), and a client process sending N non-streamed native chats
at concurrency 8. The core's process CPU time (all its threads: gateway, sampler, store) over the N requests,
divided by N, is the figure. Rounds alternate between the checkouts so that a busy machine hurts both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.core_script import core_before_sim

MEASURE = (
    core_before_sim(2000)
    + r"""
N = int(sys.argv[1])
CLIENT = '''
import httpx, sys, concurrent.futures
url, n = sys.argv[1], int(sys.argv[2])
body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}], "stream": False,
        "options": {"sim_tokens": 16}}
def one(k):
    with httpx.Client(timeout=60) as c:
        for _ in range(n // 8):
            c.post(url + "/api/chat", json=body).raise_for_status()
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(one, range(8)))
'''

async def main():
    session = Session(config, options)
    await session.start()
    url = session.gateway_url
    warm = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, url, "80")
    await warm.wait()
    cpu0 = time.process_time()
    client = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, url, str(N))
    await client.wait()
    cpu = time.process_time() - cpu0
    await session.stop()
    print(json.dumps({"requests": N, "cpu_ms_per_request": round(cpu / N * 1000, 4)}))

asyncio.run(main())
sim.kill()
"""
)


def measure(root: Path, requests: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(requests)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"} | _python_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms_per_request"]


def _python_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(("HOME", "XDG_", "TMPDIR", "LANG"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="an older checkout of claw to compare with")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sides = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    results: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.rounds):
        for name, root in sides.items():
            results[name].append(measure(root, args.requests))
            print(f"round {round_ + 1} {name:8s} {results[name][-1]:.3f} ms CPU per request", flush=True)
    report = {name: {"median_ms": statistics.median(v), "rounds": v} for name, v in results.items()}
    if args.baseline:
        report["this_vs_baseline"] = round(report["this"]["median_ms"] / report["baseline"]["median_ms"], 3)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
