"""CPU per relayed chunk of a streamed answer, with the answer cache on and off, for short and long streams.

    python benchmarks/bench_cache_chunks.py                   # 1k, 4k and 8k-chunk streams, cache off and on
    python benchmarks/bench_cache_chunks.py --lengths 1000,8000 --rounds 3

With `[gateway] cache_ttl_s > 0` the relay keeps each answer's bytes to serve it again while a model fails. Its cost
per chunk must not grow with the stream's length (it once recomputed the kept bytes on every chunk: 120 → 174 → 221
µs per chunk for 1k/4k/8k chunks). Each measurement is its own process: the core (`Session`, as `claw serve` runs
it) in front of `claw sim` (its own process, fast), and a client process streaming distinct prompts (no answer is
served from the cache) at concurrency 4. The core's CPU time over the streams divided by the chunks relayed is the
figure; cache on and off alternate within each round, so a busy machine hurts both alike. The verdict is the ratio
of the longest stream's cost to the shortest's, cache on, next to the same ratio cache off. (At the simulator's
high speed several chunks often arrive in one read, so the absolute µs per chunk are lower than at a real decode
rate; the ratios are what the benchmark is for.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.core_script import core_before_sim

MEASURE = (
    core_before_sim(5000)
    + r"""
TOKENS, STREAMS, TTL = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
config.gateway.cache_ttl_s = TTL
CLIENT = '''
import httpx, sys, concurrent.futures, json
url, tokens, n, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def one(k):
    chunks = 0
    with httpx.Client(timeout=300) as c:
        for i in range(k, n, 4):
            body = {"model": "llama3.2:3b", "messages": [{"role": "user", "content": f"{tag} {i}"}],
                    "options": {"sim_tokens": tokens}}
            with c.stream("POST", url + "/api/chat", json=body) as r:
                r.raise_for_status()
                chunks += sum(1 for line in r.iter_lines() if line)
    return chunks
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    print(sum(ex.map(one, range(4))))
'''

async def run_client(url, tokens, n, tag):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CLIENT, url, str(tokens), str(n), tag,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return int(out.decode().strip())

async def main():
    session = Session(config, options)
    await session.start()
    url = session.gateway_url
    await run_client(url, TOKENS, 4, "warm")
    cpu0 = time.process_time()
    chunks = await run_client(url, TOKENS, STREAMS, "measured")
    cpu = time.process_time() - cpu0
    await session.stop()
    print(json.dumps({"chunks": chunks, "cpu_us_per_chunk": round(cpu / chunks * 1e6, 2)}))

asyncio.run(main())
sim.kill()
"""
)


def measure(tokens: int, streams: int, ttl: float) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tokens), str(streams), str(ttl)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["cpu_us_per_chunk"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1000,4000,8000", help="tokens (chunks) per stream")
    parser.add_argument("--chunks", type=int, default=48_000, help="chunks relayed per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",")]
    runs: dict[str, dict[int, list[float]]] = {"off": {n: [] for n in lengths}, "on": {n: [] for n in lengths}}
    for round_ in range(args.rounds):
        for tokens in lengths:
            streams = max(4, args.chunks // tokens)
            for cache, ttl in (("off", 0.0), ("on", 60.0)):
                runs[cache][tokens].append(measure(tokens, streams, ttl))
                print(
                    f"round {round_ + 1}: {tokens:>5}-chunk streams, cache {cache:3s}: "
                    f"{runs[cache][tokens][-1]:.1f} µs CPU per chunk",
                    flush=True,
                )
    medians = {cache: {n: statistics.median(v) for n, v in by_len.items()} for cache, by_len in runs.items()}
    short, long = lengths[0], lengths[-1]
    report = {
        "us_per_chunk": medians,
        "rounds": runs,
        "long_vs_short": {cache: round(m[long] / m[short], 3) for cache, m in medians.items()},
        "cache_on_vs_off": {n: round(medians["on"][n] / medians["off"][n], 3) for n in lengths},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
