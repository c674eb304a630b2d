"""Record the H200 power trace fixtures and measure NVML costs on the real GPU. Read-only: no GPU setting changes.

Run on the device machine from a folder that holds claw_tui/ and benchmarks/:
    PYTHONUNBUFFERED=1 python3 benchmarks/device/record_h200.py

Writes into $OUT:
    h200_idle_no_context.jsonl.gz   (a) ~15 s idle, no CUDA context anywhere
    h200_decode_burst.jsonl.gz      (b) idle -> decode-like requests -> idle, ~27 s, CUDA context resident
    h200_idle_resident.jsonl.gz     (c) ~15 s idle with a CUDA context holding ~16 GiB
    results.json                    per-call costs, sample buffer behaviour, trace stats, counter vs integral
probe_h200.py (a second run) adds h200_power_cap.jsonl.gz and CPU costs; h200_results_run*.json hold what both
runs printed on 2026-11-21. With --fake the same flow runs against the test suite's fake NVML and a CPU stand-in for
the load (a dry run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

import itertools

from benchmarks.bench_nvml_source import raw_nvml_costs, sampler_cpu_share, source_costs
from claw_tui.telemetry.nvml import NvmlSource
from claw_tui.telemetry.replay import load_trace, record_trace, write_trace

HERE = Path(__file__).resolve().parent


class TimedSource:
    """Wraps a TelemetrySource and keeps the wall time of every call, per method."""

    def __init__(self, source: Any):
        self._source = source
        self.kind = source.kind
        self.times: dict[str, list[float]] = defaultdict(list)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._source, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.times[name].append((time.perf_counter() - start) * 1e6)

        return timed

    def summary(self) -> dict:
        out = {}
        for name, values in self.times.items():
            values = sorted(values)
            out[name] = {
                "n": len(values),
                "median_us": round(values[len(values) // 2], 1),
                "p99_us": round(values[int(0.99 * (len(values) - 1))], 1),
                "max_us": round(values[-1], 1),
            }
        return out


def probe_sample_buffer(nvml: Any, handle: Any, seconds: float = 4.0, poll_s: float = 0.5) -> dict:
    """How the driver's power sample buffer behaves: size, spacing, clock offset, repeats across polls."""
    value_type, first = nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, 0)
    stamps = [s.timeStamp for s in first]
    now_us = time.time() * 1e6
    dts = [b - a for a, b in itertools.pairwise(stamps)]
    result = {
        "value_type": value_type,
        "buffer_samples": len(stamps),
        "buffer_span_s": (stamps[-1] - stamps[0]) / 1e6 if stamps else None,
        "buffer_dt_us_min_median_max": [min(dts), sorted(dts)[len(dts) // 2], max(dts)] if dts else None,
        "buffer_sorted": stamps == sorted(stamps),
        "newest_sample_age_ms": (now_us - max(stamps)) / 1000 if stamps else None,
        "first_values_mw": [s.sampleValue.uiVal for s in first[:5]],
    }
    # Poll with the newest timestamp seen: count repeats (<= last seen) and samples per poll.
    last = max(stamps)
    repeats = not_found = 0
    per_poll = []
    all_stamps = []
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(poll_s)
        try:
            _, batch = nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, last)
        except nvml.NVMLError as err:
            not_found += 1
            result.setdefault("poll_errors", []).append(str(err))
            continue
        batch_stamps = [s.timeStamp for s in batch]
        repeats += sum(1 for ts in batch_stamps if ts <= last)
        per_poll.append(len(batch_stamps))
        all_stamps += [ts for ts in batch_stamps if ts > last]
        last = max([last, *batch_stamps])
    gaps = [b - a for a, b in itertools.pairwise(all_stamps)]
    result.update(
        {
            "poll_s": poll_s,
            "samples_per_poll": per_poll,
            "repeats_across_polls": repeats,
            "empty_polls": not_found,
            "polled_dt_us_median": sorted(gaps)[len(gaps) // 2] if gaps else None,
            "polled_dt_us_max": max(gaps) if gaps else None,
            "polled_duplicates": len(all_stamps) - len(set(all_stamps)),
        }
    )
    return result


def probe_instant_field(nvml: Any, handle: Any, seconds: float = 2.0) -> dict:
    """How often the instant power field changes (value or timestamp), polled every ms."""
    changes = []
    last_key = None
    end = time.time() + seconds
    value_type = None
    while time.time() < end:
        value = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        value_type = value.valueType
        key = (value.timestamp, value.value.uiVal)
        if key != last_key:
            changes.append(time.time())
            last_key = key
        time.sleep(0.001)
    intervals = [b - a for a, b in itertools.pairwise(changes)]
    return {
        "value_type": value_type,
        "updates": len(changes),
        "median_update_interval_ms": round(sorted(intervals)[len(intervals) // 2] * 1000, 1) if intervals else None,
    }


def probe_energy_counter(nvml: Any, handle: Any, seconds: float = 1.5) -> dict:
    """How often the energy counter's value changes, polled back to back."""
    changes = []
    calls = 0
    last = None
    end = time.time() + seconds
    while time.time() < end:
        value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        calls += 1
        if value != last:
            changes.append(time.time())
            last = value
    intervals = [b - a for a, b in itertools.pairwise(changes)]
    return {
        "calls": calls,
        "updates": len(changes),
        "median_update_interval_ms": round(sorted(intervals)[len(intervals) // 2] * 1000, 1) if intervals else None,
    }


def stats_dict(stats: list) -> list[dict]:
    return [
        {
            "gpu": s.gpu,
            "samples": s.samples,
            "duration_s": round(s.duration_s, 3),
            "median_dt_ms": None if s.median_dt_s is None else round(s.median_dt_s * 1000, 3),
            "max_gap_ms": None if s.max_gap_s is None else round(s.max_gap_s * 1000, 1),
            "gaps": s.gaps,
            "duplicates": s.duplicates,
            "mean_power_w": None if s.mean_power_w is None else round(s.mean_power_w, 2),
            "counter_delta_j": s.counter_delta_j,
            "integral_j": None if s.integral_j is None else round(s.integral_j, 2),
            "counter_error_pct": None if s.counter_error_pct is None else round(s.counter_error_pct, 3),
        }
        for s in stats
    ]


def record(source: Any, path: Path, seconds: float, meta: dict) -> dict:
    timed = TimedSource(source)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.time()
    stats = record_trace(timed, path, seconds, meta=meta)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    wall = time.time() - wall_before
    result = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "stats": stats_dict(stats),
        "call_costs": timed.summary(),
        "recorder_core_pct": round(cpu_s / wall * 100, 3),
    }
    print(json.dumps(result), flush=True)
    return result


def add_marks(path: Path, events: list[tuple[float, str]]) -> None:
    trace = load_trace(path)
    start = trace.header["recorded_at"]
    trace.marks = [(round(ts - start, 6), label) for ts, label in events if 0 <= ts - start <= trace.duration_s]
    write_trace(trace, path)


def start_load(fake: bool, idle_before_s: float, load_s: float, mode: str = "decode") -> subprocess.Popen:
    if fake:
        script = (
            "import sys,json,time\nprint('ready',flush=True)\nfor l in sys.stdin:\n"
            " if l.strip()=='go':\n  t=time.time();time.sleep(0.5)\n"
            "  print(json.dumps({'events':[[t,'go'],[t+0.2,'load_start'],[t+0.4,'load_end']]}),flush=True)\n"
            " elif l.strip()=='exit': break\n"
        )
        cmd = [sys.executable, "-c", script]
    else:
        cmd = [sys.executable, str(HERE / "decode_load.py"), str(idle_before_s), str(load_s), mode]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"load process did not start: {line!r}")
    return child


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake", action="store_true", help="dry run against the fake NVML")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every duration (dry runs use less)")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", "/tmp/claw_out"))
    out.mkdir(parents=True, exist_ok=True)
    s = args.scale
    results: dict[str, Any] = {"host": os.uname().nodename, "started": time.time()}

    if args.fake:
        from tests.test_nvml_source import FakeNvml

        nvml = FakeNvml()
        nvml.now_us = int(time.time() * 1e6) - 3_000_000
        nvml.advance(3.0)
        threading.Thread(
            target=lambda: [time.sleep(0.02) or nvml.advance(0.02) for _ in range(100000)], daemon=True
        ).start()
    else:
        import pynvml as nvml

        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,power.limit,power.draw,clocks.sm,"
                "clocks.mem,pstate,temperature.gpu,memory.used",
                "--format=csv",
            ],
            capture_output=True,
            text=True,
        )
        results["nvidia_smi"] = smi.stdout.strip()
        print(smi.stdout, flush=True)

    source = NvmlSource(nvml=nvml)
    statics = source.open()
    results["statics"] = [
        {
            "name": st.name,
            "uuid": st.uuid,
            "driver": st.driver,
            "power_limit_w": st.power_limit_w,
            "limits": [st.power_limit_min_w, st.power_limit_max_w],
            "max_sm": st.max_sm_clock_mhz,
            "max_mem": st.max_mem_clock_mhz,
            "vram_total_mib": st.vram_total_mib,
            "sm_clocks": len(st.supported_sm_clocks_mhz),
            "sm_clock_range": [
                min(st.supported_sm_clocks_mhz, default=None),
                max(st.supported_sm_clocks_mhz, default=None),
            ],
        }
        for st in statics
    ]
    print(json.dumps(results["statics"]), flush=True)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    snapshot = source.snapshot(0)
    results["idle_snapshot"] = dict(snapshot.to_json().items())

    if not args.fake:
        results["sample_buffer"] = probe_sample_buffer(nvml, handle, seconds=4.0 * s)
        results["instant_field"] = probe_instant_field(nvml, handle, seconds=2.0 * s)
        results["energy_counter"] = probe_energy_counter(nvml, handle, seconds=1.5 * s)
        results["raw_call_costs_idle"] = raw_nvml_costs(nvml, handle)
        print(json.dumps({k: results[k] for k in ("sample_buffer", "instant_field", "energy_counter")}), flush=True)
    results["source_call_costs_idle"] = source_costs(source)
    results["sampler_idle"] = sampler_cpu_share(source, [0], 5.0 * s)
    print(json.dumps({k: results[k] for k in ("source_call_costs_idle", "sampler_idle")}), flush=True)
    source.close()

    common = {"gpu": statics[0].name, "driver": statics[0].driver}
    results["idle_no_context"] = record(
        NvmlSource(nvml=nvml),
        out / "h200_idle_no_context.jsonl.gz",
        15 * s,
        {**common, "scenario": "idle, no CUDA context on the GPU"},
    )

    idle_before, load_s, idle_after = 5.0 * s, 15.0 * s, 7.0 * s
    child = start_load(args.fake, idle_before, load_s)
    try:
        time.sleep(2.0 * s)  # let the context's clocks settle before the recording starts
        child.stdin.write("go\n")
        child.stdin.flush()
        burst_path = out / "h200_decode_burst.jsonl.gz"
        results["decode_burst"] = record(
            NvmlSource(nvml=nvml),
            burst_path,
            idle_before + load_s + idle_after,
            {
                **common,
                "scenario": "idle with a resident context -> decode-like requests (4096-token prefill, "
                "batch-8 decode over 8 GiB bf16 weights) -> idle",
                "load": {"idle_before_s": idle_before, "load_s": load_s},
            },
        )
        load_report = json.loads(child.stdout.readline())
        results["decode_burst"]["load"] = {k: v for k, v in load_report.items() if k != "events"}
        add_marks(burst_path, load_report["events"])
        results["decode_burst"]["bytes_with_marks"] = burst_path.stat().st_size
        time.sleep(3.0 * s)
        results["idle_resident"] = record(
            NvmlSource(nvml=nvml),
            out / "h200_idle_resident.jsonl.gz",
            15 * s,
            {**common, "scenario": "idle with a CUDA context holding 16 GiB (a resident model), after a load"},
        )
    finally:
        child.stdin.write("exit\n")
        child.stdin.flush()
        child.wait(timeout=60)
    results["finished"] = time.time()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
