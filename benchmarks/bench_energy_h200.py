"""Session energy (claw's sampler + ledger) vs the GPU's energy counter over idle -> load -> idle, on a real GPU.

    PYTHONUNBUFFERED=1 python3 benchmarks/bench_energy_h200.py        (on the device machine; writes into $OUT)

Read-only: never calls an NVML setter. Imports only claw_tui.telemetry and claw_tui.ledger (plus torch for the load,
in a child process). What it does:
  1. reads the energy counter directly (the reference), then starts TelemetrySampler over NvmlSource exactly as the
     session does (poll 0.25 s, counter on its own thread at 1 Hz) feeding a Ledger;
  2. idle, then a bf16 matmul load in bursts (each burst is a "request" in the ledger), then idle again;
  3. stops, reads the counter again, and compares the ledger's total with the counter's delta cut to the window
     the samples cover (edges of a few ms corrected with the idle power there);
  4. reports the power trace achieved (sample spacing, gaps, samples vs the expected 50 Hz), the sampler's own
     counter check, and the process CPU time (the sampler, its energy thread and the ledger).
Targets: within 1% of the counter; a 20 ms trace without gaps.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import itertools

from claw_tui.ledger import Ledger
from claw_tui.telemetry.nvml import NvmlSource
from claw_tui.telemetry.sampler import TelemetrySampler

IDLE_BEFORE_S = 8.0
IDLE_AFTER_S = 8.0
BURSTS = ((3.0, 1.5), (2.0, 1.0), (4.0, 2.0), (1.0, 1.0), (3.0, 0.0))  # (load s, rest s)

LOAD = r"""
import json, sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
(a @ b); torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.readline()
for load_s, rest_s in json.loads(sys.argv[1]):
    start = time.time()
    print(json.dumps({"start": start}), flush=True)
    while time.time() - start < load_s:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
    print(json.dumps({"end": time.time()}), flush=True)
    time.sleep(rest_s)
print("done", flush=True)
"""


# --dry-run: the same flow with a CPU stand-in for the load (no torch), e.g. against tests/fake_nvml on PYTHONPATH.
DRY_LOAD = (
    LOAD.replace("import json, sys, time, torch", "import json, sys, time")
    .replace(
        """a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
(a @ b); torch.cuda.synchronize()
""",
        "",
    )
    .replace(
        """        for _ in range(10):
            a @ b
        torch.cuda.synchronize()""",
        "        time.sleep(0.01)",
    )
)


def read_counter(nvml, handle) -> tuple[float, float]:
    """(time at the middle of the call, joules)."""
    before = time.time()
    millijoules = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    return (before + time.time()) / 2, millijoules / 1000.0


def run_load(ledger: Ledger, log, script: str) -> list:
    child = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(BURSTS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    log(f"load process ready (CUDA context up) at {time.time():.3f}")
    time.sleep(2.0)  # the resident context's idle level
    child.stdin.write("go\n")
    child.stdin.flush()
    records, clock = [], ledger.clock
    for line in child.stdout:
        line = line.strip()
        if line == "done":
            break
        event = json.loads(line)
        if "start" in event:
            record = ledger.open_request(model="bf16-matmul", endpoint="/bench", t_arrival=event["start"])
            ledger.clock = lambda event=event: event[
                "start"
            ]  # stamp the upstream start with the burst's own start time
            ledger.mark_upstream_start(record, gpu=0)
            ledger.clock = clock
            records.append(record)
        else:
            ledger.clock = lambda event=event: event["end"]
            ledger.finish(records[-1], "ok", 200)
            ledger.clock = clock
    child.wait(timeout=60)
    log(f"load process gone at {time.time():.3f}")
    return records


def main() -> int:
    import pynvml

    out = Path(os.environ.get("OUT", "/tmp/claw_out"))
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    ledger = Ledger()
    sampler = TelemetrySampler(NvmlSource(), poll_interval_s=0.25, energy_interval_s=1.0)
    sampler.add_power_listener(ledger.add_power)
    start_counter = read_counter(pynvml, handle)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sampler.start()
    ledger.set_gpus(range(sampler.gpu_count))
    log(f"sampler {sampler.state} on {[s.name for s in sampler.statics()]}, driver {sampler.statics()[0].driver}")
    time.sleep(IDLE_BEFORE_S)
    records = run_load(ledger, log, DRY_LOAD if "--dry-run" in sys.argv else LOAD)
    time.sleep(IDLE_AFTER_S)
    sampler.poll_now()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sampler.stop()
    end_counter = read_counter(pynvml, handle)

    energy = ledger.energy_by_gpu()[0]
    trace = sampler.power_trace(0, energy.first_ts - 1e-6)
    first_w = trace[0].watts
    counter_delta = end_counter[1] - start_counter[1]
    # The counter was read a moment before the first and after the last sample: cut those edges (idle power there).
    counter_window = (
        counter_delta
        - first_w * (energy.first_ts - start_counter[0])
        - energy.last_watts * (end_counter[0] - energy.last_ts)
    )
    totals = ledger.totals()
    error_pct = (totals["total_j"] - counter_window) / counter_window * 100
    dts = [b.ts - a.ts for a, b in itertools.pairwise(trace)]
    span = energy.last_ts - energy.first_ts
    stats = sampler.trace_stats(0)
    check = sampler.energy_check(0)
    results = {
        "gpu": sampler.statics()[0].name,
        "run_s": round(wall, 2),
        "window_s": round(span, 3),
        "ledger_total_j": round(totals["total_j"], 2),
        "ledger_idle_j": round(totals["idle_j"], 2),
        "ledger_active_j": round(totals["active_j"], 2),
        "counter_delta_raw_j": round(counter_delta, 2),
        "counter_window_j": round(counter_window, 2),
        "error_vs_counter_pct": round(error_pct, 3),
        "sampler_energy_check": check,
        "sampler_counter_energy_j": sampler.counter_energy_j(0),
        "trace": {
            "samples": len(trace),
            "expected_at_50hz": round(span / 0.02) + 1,
            "median_dt_ms": round(statistics.median(dts) * 1000, 3),
            "p99_dt_ms": round(sorted(dts)[int(0.99 * (len(dts) - 1))] * 1000, 3),
            "max_dt_ms": round(max(dts) * 1000, 3),
            "gaps_over_100ms": stats["gaps"],
            "duplicates_dropped": stats["dropped_duplicates"],
        },
        "peak_w": max(s.watts for s in trace),
        "requests": [
            {
                "duration_s": round(r.duration_ms / 1000, 3),
                "energy_j": round(r.energy_j, 1),
                "avg_w": round(r.energy_j / (r.duration_ms / 1000), 1),
                "final": r.energy_final,
            }
            for r in records
        ],
        "process_cpu_pct_of_a_core": round(cpu / wall * 100, 3),
        "polls": sampler.polls,
        "counter_reads": sampler.energy_reads,
    }
    (out / "bench_energy_h200.json").write_text(json.dumps(results, indent=2))
    log(json.dumps(results, indent=2))
    log(
        f"== session energy {totals['total_j']:.1f} J vs energy counter {counter_window:.1f} J over the same "
        f"{span:.1f} s: {error_pct:+.3f}% (target within 1%)"
    )
    log(
        f"== power trace: {len(trace)} samples, median {statistics.median(dts) * 1000:.2f} ms apart, "
        f"max {max(dts) * 1000:.1f} ms, {stats['gaps']} gaps (target 20 ms)"
    )
    log(f"== sampler's own counter check: {check['error_pct']:+.3f}% over {check['readings']} counter reads")
    log(f"== process CPU (sampler + energy thread + ledger): {cpu / wall * 100:.3f}% of a core")
    (out / "bench_energy_h200.txt").write_text("\n".join(lines) + "\n")
    pynvml.nvmlShutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
