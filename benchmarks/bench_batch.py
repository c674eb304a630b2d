"""Batch jobs in the demo: interactive latency with a 500-request batch queued, and the batch's energy per token.

    python benchmarks/bench_batch.py [--requests 500] [--interactive 240] [--sim-speed 3] [--preempt both]

One `claw serve --demo` process per scheduling mode (`[batch] preempt` off, on, or both in turn). In each:
1. warm-up: the model is loaded;
2. baseline: an interactive schedule alone (streamed chats at seeded random times), TTFT measured by the client;
3. mixed: the same schedule again with a 500-request batch submitted through the `openai` SDK just before it; the
   batch must complete in the gaps between interactive requests;
4. one by one: the batch's 500 requests sent interactively, each after the last ended (POST /v1/chat/completions);
   their J/token (Σ energy_j / Σ completion tokens, from /claw/v1/requests) against the batch's own (its `claw`
   figures, which count every attempt, preempted ones included).
Targets: interactive p95 TTFT with the batch queued within 10% of the baseline; batch J/token ≥ 20% lower than one
by one. The results go to benchmarks/results/batch_demo.json.
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

from claw_tui.summary import percentile

MODEL = "qwen3:8b"
RESULTS = ROOT / "benchmarks" / "results" / "batch_demo.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(tmp: Path, sim_speed: float, preempt: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = tmp / "config.toml"
    config.write_text(
        f'[store]\npath = "{tmp / "sessions.db"}"\n[telemetry]\npoll_interval_s = 0.1\n'
        f"[batch]\npreempt = {'true' if preempt else 'false'}\n"
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


def schedule(count: int, mean_gap_s: float, seed: int = 11) -> list[float]:
    rng = random.Random(seed)
    at, times = 0.0, []
    for _ in range(count):
        at += rng.expovariate(1.0 / mean_gap_s)
        times.append(at)
    return times


async def one_interactive(client: httpx.AsyncClient, i: int, tokens: int) -> float:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Quick question number {i}: what time is it?"}],
        "options": {"num_predict": tokens},
    }
    started = time.perf_counter()
    ttft = None
    async with client.stream("POST", "/api/chat", json=body) as response:
        async for line in response.aiter_lines():
            if ttft is None and line.strip():
                message = json.loads(line).get("message") or {}
                if message.get("content") or message.get("thinking"):
                    ttft = (time.perf_counter() - started) * 1000
    if ttft is None:
        raise RuntimeError("an interactive request gave no token")
    return ttft


async def interactive_phase(url: str, times: list[float], tokens: int) -> list[float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        start = time.perf_counter()

        async def at(i: int, t: float) -> float:
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


def records_by_id(url: str, wanted: set[str]) -> list[dict]:
    found: dict[str, dict] = {}
    before = ""
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            page = client.get(f"/claw/v1/requests?limit=1000{before}").json()
            for record in page["requests"]:
                if record["id"] in wanted:
                    found[record["id"]] = record
            if not page.get("next_before") or len(found) == len(wanted):
                break
            before = f"&before={page['next_before']}"
    return list(found.values())


def wait_final(url: str, ids: set[str], timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = records_by_id(url, ids)
        if (len(records) == len(ids) and all(r["energy_final"] for r in records)) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def run_mode(args, preempt: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="claw-bench-batch-"))
    process, url = start_service(tmp, args.sim_speed, preempt)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warm up"}], max_tokens=4)
        times = schedule(args.interactive, args.gap)
        lines = batch_lines(args.requests, args.max_tokens)

        print(f"[preempt={preempt}] baseline: {len(times)} interactive requests over ~{times[-1]:.0f} s", flush=True)
        baseline = asyncio.run(interactive_phase(url, times, args.interactive_tokens))
        time.sleep(2)

        upload = client.files.create(file=("bench.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        started = time.monotonic()
        print(f"[preempt={preempt}] mixed: the same schedule with {len(lines)} batch requests queued", flush=True)
        mixed = asyncio.run(interactive_phase(url, times, args.interactive_tokens))
        phase_s = time.monotonic() - started
        while (job := client.batches.retrieve(batch.id)).status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.5)
        batch_s = (job.completed_at or time.time()) - job.created_at
        while not (job := client.batches.retrieve(batch.id)).model_extra["claw"]["energy_final"]:
            time.sleep(0.5)
        claw = job.model_extra["claw"]

        print(f"[preempt={preempt}] one by one: the {len(lines)} requests sent interactively, in turn", flush=True)
        ids = one_by_one(url, lines)
        records = wait_final(url, set(ids))
        energy = sum(r["energy_j"] for r in records)
        tokens = sum(r["completion_tokens"] for r in records)
        serial_jpt = energy / tokens if tokens else None
        p95_base, p95_mixed = percentile(baseline, 95), percentile(mixed, 95)
        return {
            "preempt": preempt,
            "interactive": {
                "requests": len(times),
                "p50_ttft_ms": {"alone": percentile(baseline, 50), "batch_queued": percentile(mixed, 50)},
                "p95_ttft_ms": {"alone": p95_base, "batch_queued": p95_mixed},
                "p95_ratio": p95_mixed / p95_base,
                "phase_s": round(phase_s, 1),
            },
            "batch": {
                "status": job.status,
                "requests": job.request_counts.total,
                "completed": job.request_counts.completed,
                "seconds_to_complete": round(batch_s, 1),
                "completed_within_interactive_phase": batch_s <= phase_s + 1.0,
                "attempts": claw["attempts"],
                "energy_j": claw["energy_j"],
                "load_j": claw["load_j"],
                "completion_tokens": claw["completion_tokens"],
                "joules_per_token": claw["joules_per_token"],
            },
            "one_by_one": {
                "requests": len(records),
                "energy_j": round(energy, 3),
                "completion_tokens": tokens,
                "joules_per_token": serial_jpt,
            },
            "batch_vs_one_by_one_jpt": claw["joules_per_token"] / serial_jpt if serial_jpt else None,
        }
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def report(result: dict) -> None:
    ia, batch, serial = result["interactive"], result["batch"], result["one_by_one"]
    ttft_ok = ia["p95_ratio"] <= 1.10
    ratio = result["batch_vs_one_by_one_jpt"]
    energy_ok = ratio is not None and ratio <= 0.80
    print(f"\n== [batch] preempt = {str(result['preempt']).lower()} ==")
    print(
        f"interactive p95 TTFT: {ia['p95_ttft_ms']['alone']:.1f} ms alone, {ia['p95_ttft_ms']['batch_queued']:.1f} ms"
        f" with the batch queued: ×{ia['p95_ratio']:.3f} (target ≤ ×1.10: {'met' if ttft_ok else 'MISSED'})"
    )
    print(
        f"  p50: {ia['p50_ttft_ms']['alone']:.1f} → {ia['p50_ttft_ms']['batch_queued']:.1f} ms;"
        f" {ia['requests']} requests over {ia['phase_s']} s"
    )
    print(
        f"batch: {batch['status']}, {batch['completed']}/{batch['requests']} in {batch['seconds_to_complete']} s"
        f" ({'within' if batch['completed_within_interactive_phase'] else 'AFTER'} the interactive phase),"
        f" {batch['attempts']} attempts"
    )
    print(
        f"J/token: batch {batch['joules_per_token']:.4f} ({batch['energy_j']:.0f} J / {batch['completion_tokens']} tok)"
        f" vs one by one {serial['joules_per_token']:.4f} ({serial['energy_j']:.0f} J / {serial['completion_tokens']}"
        f" tok): ×{ratio:.3f}, {100 * (1 - ratio):.1f}% lower (target ≥ 20%: {'met' if energy_ok else 'MISSED'})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="batch requests")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens each batch request generates")
    parser.add_argument("--interactive", type=int, default=240, help="interactive requests per phase")
    parser.add_argument("--interactive-tokens", type=int, default=24, help="tokens each interactive request asks")
    parser.add_argument("--gap", type=float, default=0.5, help="mean seconds between interactive arrivals")
    parser.add_argument("--sim-speed", type=float, default=3.0, help="the simulator's speed factor")
    parser.add_argument("--preempt", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.preempt]
    results = [run_mode(args, preempt) for preempt in modes]
    for result in results:
        report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
