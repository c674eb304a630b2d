"""Batch jobs in the demo: interactive latency with a 500-request batch queued, and the batch's energy per token.

    python benchmarks/bench_batch.py [--requests 500] [--interactive 240] [--rounds 6] [--preempt both]

One `claw serve --demo` process per scheduling mode (`[batch] preempt` off, on, or both in turn). In each, after a
warm-up, the interactive traffic (streamed chats at seeded random times) runs in `--rounds` rounds, and each round runs
the same arrivals twice: once alone, once with a share of the batch submitted through the `openai` SDK just before.
The order alternates (alone first, then batch first), so a drift of the machine's load falls on both sides alike.
TTFT is measured by the client. "With the batch queued" counts the requests that arrived before the round's batch
share was done (its last line's end); "alone" counts the same arrivals of the alone run, so both sides are the same
traffic. The spread: a 90% bootstrap interval of the p95 ratio (resampled within rounds) and each round's ratios.
The batch must complete in the gaps of its rounds.

Then, once: the batch's requests sent interactively, each after the last ended (POST /v1/chat/completions); their
J/token (Σ energy_j / Σ completion tokens, from /claw/v1/requests) against the batch's own (its `claw` figures,
which count every attempt, preempted ones included), summed over the rounds.

Targets: interactive p95 TTFT with the batch queued within 10% of the same traffic alone; batch J/token ≥ 20% lower
than one by one. The results go to benchmarks/results/batch_demo.json and .txt.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claw_tui.quantiles import percentile

MODEL = "qwen3:8b"
RESULTS = ROOT / "benchmarks" / "results" / "batch_demo.json"
REPORT = RESULTS.with_suffix(".txt")
END = ("completed", "failed", "expired", "cancelled")
BOOTSTRAP = 2000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(tmp: Path, sim_speed: float, preempt: bool, quiet_s: float | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = tmp / "config.toml"
    quiet = "" if quiet_s is None else f"quiet_s = {quiet_s}\n"
    config.write_text(
        f'[store]\npath = "{tmp / "sessions.db"}"\n[telemetry]\npoll_interval_s = 0.1\n'
        f"[batch]\npreempt = {'true' if preempt else 'false'}\n{quiet}"
    )
    log = open(tmp / "serve.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "serve", "--demo", "--port", str(port), "--sim-speed", str(sim_speed)],
        stderr=log,
        env=dict(os.environ, CLAW_CONFIG=str(config)),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/version", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"claw serve did not start (see {tmp / 'serve.log'})")


def batch_lines(count: int, max_tokens: int) -> list[dict]:
    rng = random.Random(7)
    topics = ["invoices", "tickets", "release notes", "meeting minutes", "support chats", "incident reports"]
    return [
        {
            "custom_id": f"doc-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Summarise {rng.choice(topics)} batch {i} in a paragraph."}],
                "max_tokens": max_tokens,
            },
        }
        for i in range(count)
    ]


def schedule(count: int, mean_gap_s: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    at, times = 0.0, []
    for _ in range(count):
        at += rng.expovariate(1.0 / mean_gap_s)
        times.append(at)
    return times


def shares(items: list, parts: int) -> list[list]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


async def one_interactive(client: httpx.AsyncClient, i: int, tokens: int) -> tuple[float | None, str]:
    """(TTFT in ms, or None when the request failed; the gateway's request id)"""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Quick question number {i}: what time is it?"}],
        "options": {"num_predict": tokens},
    }
    started = time.perf_counter()
    ttft = None
    async with client.stream("POST", "/api/chat", json=body) as response:
        request_id = response.headers.get("x-claw-request-id", "")
        async for line in response.aiter_lines():
            if ttft is None and line.strip():
                message = json.loads(line).get("message") or {}
                if message.get("content") or message.get("thinking"):
                    ttft = (time.perf_counter() - started) * 1000
    if ttft is None:
        print(f"an interactive request failed: {response.status_code}, request {request_id}", flush=True)
    return ttft, request_id


async def interactive_phase(url: str, times: list[float], tokens: int) -> list[tuple[float | None, str]]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        start = time.perf_counter()

        async def at(i: int, t: float) -> tuple[float | None, str]:
            await asyncio.sleep(max(0.0, start + t - time.perf_counter()))
            return await one_interactive(client, i, tokens)

        return list(await asyncio.gather(*(at(i, t) for i, t in enumerate(times))))


def one_by_one(url: str, lines: list[dict]) -> list[str]:
    ids = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for line in lines:
            response = client.post("/v1/chat/completions", json=line["body"])
            response.raise_for_status()
            ids.append(response.headers["x-claw-request-id"])
    return ids


def all_records(url: str) -> list[dict]:
    found: list[dict] = []
    before = ""
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            page = client.get(f"/claw/v1/requests?limit=1000{before}").json()
            found.extend(page["requests"])
            if not page.get("next_before"):
                return found
            before = f"&before={page['next_before']}"


def wait_final(url: str, ids: set[str], timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in all_records(url) if r["id"] in ids]
        if (len(records) == len(ids) and all(r["energy_final"] for r in records)) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def wait_end(client: openai.OpenAI, batch_id: str):
    while (job := client.batches.retrieve(batch_id)).status not in END:
        time.sleep(0.25)
    return job


def run_round(url: str, client: openai.OpenAI, times: list[float], lines: list[dict], tokens: int, batch_first: bool):
    """The round's arrivals alone and with its batch share, in the given order."""
    out: dict = {}
    for arm in ("batch", "alone") if batch_first else ("alone", "batch"):
        if arm == "alone":
            out["alone"] = asyncio.run(interactive_phase(url, times, tokens))
        else:
            upload = client.files.create(file=("bench.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
            job = client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            started = time.time()
            out["batch"] = asyncio.run(interactive_phase(url, times, tokens))
            out["segment_s"] = time.time() - started
            out["job"] = wait_end(client, job.id).id
            out["started"] = started
        time.sleep(1.0)  # the last answers' records settle before the other side starts
    return out


def run_mode(args, preempt: bool, serial: dict | None) -> tuple[dict, dict | None]:
    tmp = Path(tempfile.mkdtemp(prefix="claw-bench-batch-"))
    process, url = start_service(tmp, args.sim_speed, preempt, args.quiet_s)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warm up"}], max_tokens=4)
        lines = batch_lines(args.requests, args.max_tokens)
        per_round = shares(list(range(args.interactive)), args.rounds)
        rounds = []
        for r, (indices, share) in enumerate(zip(per_round, shares(lines, args.rounds), strict=True)):
            times = schedule(len(indices), args.gap, seed=11 + r)
            print(
                f"[preempt={preempt}] round {r + 1}/{args.rounds}: {len(times)} interactive requests over"
                f" ~{times[-1]:.0f} s, alone and with {len(share)} batch requests",
                flush=True,
            )
            rounds.append({"times": times, **run_round(url, client, times, share, args.interactive_tokens, r % 2 == 1)})
        jobs = [client.batches.retrieve(r["job"]) for r in rounds]
        while not all(j.model_extra["claw"]["energy_final"] for j in jobs):
            time.sleep(0.5)
            jobs = [client.batches.retrieve(j.id) for j in jobs]
        records = all_records(url)
        if serial is None:
            print(f"[preempt={preempt}] one by one: the {len(lines)} requests sent interactively, in turn", flush=True)
            ids = one_by_one(url, lines)
            done = wait_final(url, set(ids))
            energy = sum(r["energy_j"] for r in done)
            tokens = sum(r["completion_tokens"] for r in done)
            serial = {
                "requests": len(done),
                "energy_j": round(energy, 3),
                "completion_tokens": tokens,
                "joules_per_token": energy / tokens if tokens else None,
            }
        return summarise(preempt, rounds, jobs, records, serial), serial
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def summarise(preempt: bool, rounds: list[dict], jobs: list, records: list[dict], serial: dict) -> dict:
    by_id = {r["id"]: r for r in records}
    lines_of = {job.id: [r for r in records if (r.get("batch") or "").startswith(job.id + "/")] for job in jobs}
    pairs = []  # per round: (alone TTFTs, batch TTFTs) of the arrivals while the batch share was queued
    server_pairs = []
    found_lines = []
    completion = []
    failed = 0
    for rnd, job in zip(rounds, jobs, strict=True):
        ends = [r["times"]["end"] for r in lines_of[job.id] if r["times"]["end"]]
        queued_s = (max(ends) if ends else rnd["started"]) - rnd["started"]
        completion.append({"seconds": round(queued_s, 1), "segment_s": round(rnd["segment_s"], 1)})
        queued = [i for i, t in enumerate(rnd["times"]) if t < queued_s] or list(range(len(rnd["times"])))
        failed += sum(1 for side in ("alone", "batch") for ttft, _ in rnd[side] if ttft is None)
        queued = [i for i in queued if rnd["alone"][i][0] is not None and rnd["batch"][i][0] is not None]
        pairs.append(([rnd["alone"][i][0] for i in queued], [rnd["batch"][i][0] for i in queued]))
        server_pairs.append((_server_ttfts(by_id, rnd["alone"], queued), _server_ttfts(by_id, rnd["batch"], queued)))
        spans = [
            (r["times"]["upstream_start"], r["times"]["end"]) for r in lines_of[job.id] if r["times"]["upstream_start"]
        ]
        for i in queued:
            arrival = by_id.get(rnd["batch"][i][1], {}).get("times", {}).get("arrival")
            if arrival is not None:
                found_lines.append(sum(1 for s, e in spans if s <= arrival < (e or float("inf"))))
    alone = [t for a, _ in pairs for t in a]
    mixed = [t for _, b in pairs for t in b]
    p95_alone, p95_mixed = percentile(alone, 95), percentile(mixed, 95)
    low, high = bootstrap_ratio(pairs)
    server_alone = [t for a, _ in server_pairs for t in a]
    server_mixed = [t for _, b in server_pairs for t in b]
    claw = [job.model_extra["claw"] for job in jobs]
    energy = sum(c["energy_j"] for c in claw)
    tokens = sum(c["completion_tokens"] for c in claw)
    batch_jpt = energy / tokens if tokens else None
    return {
        "preempt": preempt,
        "interactive": {
            "requests_per_side": sum(len(r["times"]) for r in rounds),
            "with_batch_queued": len(mixed),
            "failed": failed,
            "p50_ttft_ms": {"alone": percentile(alone, 50), "batch_queued": percentile(mixed, 50)},
            "p95_ttft_ms": {"alone": p95_alone, "batch_queued": p95_mixed},
            "p95_ratio": p95_mixed / p95_alone,
            "p95_ratio_90pct_interval": [low, high],
            "p95_ratio_by_round": [round(percentile(b, 95) / percentile(a, 95), 3) for a, b in pairs],
            "p50_ratio_by_round": [round(percentile(b, 50) / percentile(a, 50), 3) for a, b in pairs],
            "server_p95_ttft_ms": {"alone": percentile(server_alone, 95), "batch_queued": percentile(server_mixed, 95)},
            "arrivals_finding_batch_lines": {str(n): sum(1 for f in found_lines if min(f, 2) == n) for n in (0, 1, 2)},
        },
        "batch": {
            "statuses": sorted({job.status for job in jobs}),
            "requests": sum(job.request_counts.total for job in jobs),
            "completed": sum(job.request_counts.completed for job in jobs),
            "rounds": completion,
            "completed_within_rounds": sum(1 for c in completion if c["seconds"] <= c["segment_s"] + 1.0),
            "attempts": sum(c["attempts"] for c in claw),
            "energy_j": round(energy, 3),
            "load_j": round(sum(c["load_j"] for c in claw), 3),
            "completion_tokens": tokens,
            "joules_per_token": batch_jpt,
        },
        "one_by_one": serial,
        "batch_vs_one_by_one_jpt": batch_jpt / serial["joules_per_token"] if batch_jpt and serial else None,
    }


def _server_ttfts(by_id: dict, answers: list[tuple[float, str]], indices: list[int]) -> list[float]:
    out = []
    for i in indices:
        record = by_id.get(answers[i][1])
        if record and record.get("ttft_ms") is not None:
            out.append(record["ttft_ms"])
    return out


def bootstrap_ratio(pairs: list[tuple[list[float], list[float]]]) -> tuple[float, float]:
    """A 90% interval of p95(with batch) / p95(alone), resampling each side within each round."""
    rng = random.Random(1)
    ratios = []
    for _ in range(BOOTSTRAP):
        alone = [x for a, _ in pairs for x in rng.choices(a, k=len(a))]
        mixed = [x for _, b in pairs for x in rng.choices(b, k=len(b))]
        ratios.append(percentile(mixed, 95) / percentile(alone, 95))
    return percentile(ratios, 5), percentile(ratios, 95)


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def report(result: dict) -> list[str]:
    ia, batch, serial = result["interactive"], result["batch"], result["one_by_one"]
    ttft_ok = ia["p95_ratio"] <= 1.10 and not ia["failed"]
    low, high = ia["p95_ratio_90pct_interval"]
    ratio = result["batch_vs_one_by_one_jpt"]
    energy_ok = ratio is not None and ratio <= 0.80
    found = ia["arrivals_finding_batch_lines"]
    shares_done = ", ".join(f"{c['seconds']:.0f}/{c['segment_s']:.0f} s" for c in batch["rounds"])
    return [
        f"== [batch] preempt = {str(result['preempt']).lower()} ==",
        f"interactive p95 TTFT: {ia['p95_ttft_ms']['alone']:.1f} ms alone, {ia['p95_ttft_ms']['batch_queued']:.1f} ms"
        f" with the batch queued: ×{ia['p95_ratio']:.3f} (90% interval ×{low:.3f}–×{high:.3f};"
        f" target ≤ ×1.10: {'met' if ttft_ok else 'MISSED'})",
        f"  p50: {ia['p50_ttft_ms']['alone']:.1f} → {ia['p50_ttft_ms']['batch_queued']:.1f} ms;"
        f" {ia['with_batch_queued']} of {ia['requests_per_side']} arrivals per side came while the batch was queued;"
        f" they found 0/1/2 batch lines running: {found['0']}/{found['1']}/{found['2']};"
        f" {ia['failed']} interactive requests failed",
        f"  by round, p95 ratio: {' '.join(f'×{x:.2f}' for x in ia['p95_ratio_by_round'])};"
        f" p50 ratio: {' '.join(f'×{x:.2f}' for x in ia['p50_ratio_by_round'])}",
        f"  at the gateway (arrival → first token) p95: {ia['server_p95_ttft_ms']['alone']:.1f} →"
        f" {ia['server_p95_ttft_ms']['batch_queued']:.1f} ms",
        f"batch: {'/'.join(batch['statuses'])}, {batch['completed']}/{batch['requests']},"
        f" {batch['completed_within_rounds']}/{len(batch['rounds'])} rounds' shares done within their round"
        f" ({shares_done}),"
        f" {batch['attempts']} attempts",
        f"J/token: batch {batch['joules_per_token']:.4f} ({batch['energy_j']:.0f} J / {batch['completion_tokens']} tok)"
        f" vs one by one {serial['joules_per_token']:.4f} ({serial['energy_j']:.0f} J / {serial['completion_tokens']}"
        f" tok): ×{ratio:.3f}, {100 * (1 - ratio):.1f}% lower (target ≥ 20%: {'met' if energy_ok else 'MISSED'})",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="batch requests (shared out over the rounds)")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens each batch request generates")
    parser.add_argument("--interactive", type=int, default=240, help="interactive requests per side")
    parser.add_argument("--interactive-tokens", type=int, default=24, help="tokens each interactive request asks")
    parser.add_argument("--gap", type=float, default=0.5, help="mean seconds between interactive arrivals")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of alone / with the batch, alternating")
    parser.add_argument("--sim-speed", type=float, default=3.0, help="the simulator's speed factor")
    parser.add_argument("--quiet-s", type=float, default=None, help="[batch] quiet_s (default: claw's)")
    parser.add_argument("--preempt", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.preempt]
    results, serial = [], None
    for preempt in modes:
        result, serial = run_mode(args, preempt, serial)
        results.append(result)
    lines = [line for result in results for line in ["", *report(result)]]
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    command = " ".join(["python benchmarks/bench_batch.py", *sys.argv[1:]])
    REPORT.write_text("\n".join([command, *lines]) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)} and {REPORT.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
