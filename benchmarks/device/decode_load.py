"""A decode-like GPU load for power traces: a resident "model" in bf16, requests = prefill burst + decode loop.

Protocol on stdin/stdout with the recorder:
    -> prints "ready" once the weights are resident (CUDA context up, memory held)
    <- "go"   : run the schedule (idle, requests, idle), then print one JSON line of timed events
    <- "exit" : free everything and quit
Decode is memory-bound (every token reads all weights, batch 8); prefill is compute-bound (4096 tokens).
Mode "compute" (third argument) replaces the requests with back-to-back 8192^3 bf16 matrix products for the
whole load window: the card runs into its power limit.
Never changes any GPU setting.
"""

from __future__ import annotations

import json
import random
import sys
import time

import torch

LAYERS = 64
HIDDEN = 8192  # 64 x 8192 x 8192 bf16 = 8 GiB of weights
KV_CACHE_GIB = 8
DECODE_BATCH = 8
PREFILL_TOKENS = 4096


def main() -> None:
    schedule = {
        "idle_before_s": float(sys.argv[1]) if len(sys.argv) > 1 else 5.0,
        "load_s": float(sys.argv[2]) if len(sys.argv) > 2 else 15.0,
        "mode": sys.argv[3] if len(sys.argv) > 3 else "decode",
    }
    torch.manual_seed(0)
    device = torch.device("cuda")
    weights = [torch.randn(HIDDEN, HIDDEN, device=device, dtype=torch.bfloat16) * 0.01 for _ in range(LAYERS)]
    kv_cache = torch.empty(KV_CACHE_GIB * 1024**3 // 2, device=device, dtype=torch.bfloat16)
    kv_cache.zero_()
    x = torch.randn(DECODE_BATCH, HIDDEN, device=device, dtype=torch.bfloat16)
    decode_token(weights, x)  # compile kernels before the recording
    torch.cuda.synchronize()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "go":
            run = run_compute if schedule["mode"] == "compute" else run_schedule
            events = run(weights, schedule)
            print(json.dumps(events), flush=True)
        elif command == "exit":
            break
    del weights, kv_cache
    torch.cuda.empty_cache()


def decode_token(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for w in weights:
        x = torch.tanh(x @ w)
    return x


def prefill(weights: list[torch.Tensor], tokens: int) -> None:
    h = torch.randn(tokens, HIDDEN, device=weights[0].device, dtype=torch.bfloat16)
    for w in weights:
        h = torch.tanh(h @ w)
    torch.cuda.synchronize()


def run_schedule(weights: list[torch.Tensor], schedule: dict) -> dict:
    """Idle, then requests until load_s is used up; returns event times (time.time()) and token counts."""
    rng = random.Random(42)
    events: list[tuple[float, str]] = [(time.time(), "go")]
    time.sleep(schedule["idle_before_s"])
    load_end = time.time() + schedule["load_s"]
    events.append((time.time(), "load_start"))
    request = 0
    tokens = 0
    while time.time() < load_end:
        request += 1
        events.append((time.time(), f"request{request}_prefill"))
        prefill(weights, PREFILL_TOKENS)
        events.append((time.time(), f"request{request}_decode"))
        decode_until = min(load_end, time.time() + rng.uniform(1.2, 2.6))
        x = torch.randn(DECODE_BATCH, HIDDEN, device=weights[0].device, dtype=torch.bfloat16)
        while time.time() < decode_until:
            x = decode_token(weights, x)
            torch.cuda.synchronize()
            tokens += DECODE_BATCH
        events.append((time.time(), f"request{request}_end"))
        gap = rng.uniform(0.25, 0.7)
        if time.time() + gap >= load_end:
            break
        time.sleep(gap)
    events.append((time.time(), "load_end"))
    return {"events": events, "requests": request, "decode_tokens": tokens}


def run_compute(weights: list[torch.Tensor], schedule: dict) -> dict:
    """Idle, then dense bf16 matrix products until load_s is used up."""
    events: list[tuple[float, str]] = [(time.time(), "go")]
    time.sleep(schedule["idle_before_s"])
    a = torch.randn(HIDDEN, HIDDEN, device=weights[0].device, dtype=torch.bfloat16)
    load_end = time.time() + schedule["load_s"]
    events.append((time.time(), "load_start"))
    products = 0
    while time.time() < load_end:
        for w in weights[:8]:
            torch.matmul(a, w)
        torch.cuda.synchronize()
        products += 8
    events.append((time.time(), "load_end"))
    tflop = products * 2 * HIDDEN**3 / 1e12
    return {"events": events, "matmuls": products, "tflop_per_s": round(tflop / schedule["load_s"], 1)}


if __name__ == "__main__":
    main()
