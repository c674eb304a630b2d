"""Second H200 run: CPU cost per NVML call, sampler CPU share at 1 and 2 Hz energy reads, a power-capped trace,
and `claw gpu` end to end. Read-only: no GPU setting changes.

    PYTHONUNBUFFERED=1 python3 benchmarks/device/probe_h200.py     (writes into $OUT)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks.bench_nvml_source as bench
from benchmarks.device.record_h200 import add_marks, record, start_load
from claw_tui.telemetry.nvml import NvmlSource

CLAW_GPU = (
    "from claw_tui import cli; cli.COMMAND_MODULES = ('claw_tui.commands.gpu',); "
    "raise SystemExit(cli.main(['gpu', *__import__('sys').argv[1:]]))"
)


def cpu_and_wall_per_call(fn: Callable[[], Any], n: int) -> dict:
    fn()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"n": n, "cpu_us": round(cpu / n * 1e6, 1), "wall_us": round(wall / n * 1e6, 1)}


def claw_gpu(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CLAW_GPU, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    print(f"$ claw gpu {' '.join(args)}  -> rc {done.returncode}\n{done.stdout}{done.stderr}", flush=True)
    return {"args": list(args), "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def main() -> int:
    import pynvml

    out = Path(os.environ.get("OUT", "/tmp/claw_out"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    source = NvmlSource()
    source.open()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    results["cpu_per_call"] = {
        "nvmlDeviceGetTotalEnergyConsumption": cpu_and_wall_per_call(
            lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle), 100
        ),
        "NvmlSource.power_samples(4 Hz cadence)": cpu_and_wall_per_call(
            lambda: (time.sleep(0.25), source.power_samples(0, 0.0)), 12
        ),
        "NvmlSource.snapshot": cpu_and_wall_per_call(lambda: source.snapshot(0), 500),
    }
    print(json.dumps(results["cpu_per_call"]), flush=True)
    sampler = {}
    for energy_hz in (2.0, 1.0, 0.0):
        bench.SAMPLER_RATES_HZ = {
            "power_samples": 4.0,
            "snapshot": 4.0,
            **({"energy_counter_j": energy_hz} if energy_hz else {}),
        }
        sampler[f"energy_{energy_hz:g}hz"] = bench.sampler_cpu_share(source, [0], 5.0)
    results["sampler_cpu"] = sampler
    print(json.dumps(sampler), flush=True)
    source.close()

    results["claw_gpu"] = [
        claw_gpu(),
        claw_gpu("--json"),
        claw_gpu("--record", str(out / "cli_record.jsonl.gz"), "--seconds", "3"),
    ]

    child = start_load(False, 3.0, 6.0, mode="compute")
    try:
        time.sleep(2.0)
        child.stdin.write("go\n")
        child.stdin.flush()
        path = out / "h200_power_cap.jsonl.gz"
        results["power_cap"] = record(
            NvmlSource(),
            path,
            13.0,
            {
                "gpu": "NVIDIA H200",
                "driver": "580.159.04",
                "scenario": "idle with a resident context -> back-to-back 8192^3 bf16 matrix products (power limit "
                "reached) -> idle",
                "load": {"idle_before_s": 3.0, "load_s": 6.0},
            },
        )
        report = json.loads(child.stdout.readline())
        results["power_cap"]["load"] = {k: v for k, v in report.items() if k != "events"}
        add_marks(path, report["events"])
    finally:
        child.stdin.write("exit\n")
        child.stdin.flush()
        child.wait(timeout=60)
    (out / "results2.json").write_text(json.dumps(results, indent=2))
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
