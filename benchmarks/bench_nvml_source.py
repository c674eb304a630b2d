"""What reading GPU telemetry costs: per call, and in CPU share at the sampler's rates.

    python benchmarks/bench_nvml_source.py                      # replay of the H200 fixture + the fake NVML
    python benchmarks/bench_nvml_source.py --source nvml        # a real GPU: raw NVML calls and NvmlSource

The sampler's rates modelled here: power samples 4 Hz, snapshots 4 Hz, energy counter 2 Hz, per GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claw_tui.telemetry.nvml import NvmlSource
from claw_tui.telemetry.replay import ReplaySource

FIXTURE = ROOT / "tests" / "fixtures" / "traces" / "h200_decode_burst.jsonl.gz"
SAMPLER_RATES_HZ = {"power_samples": 4.0, "snapshot": 4.0, "energy_counter_j": 2.0}


def time_call(fn: Callable[[], Any], repeat: int) -> dict:
    """Median and p99 wall time of one call, in µs."""
    fn()  # first call may load a symbol or fill a cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return {
        "median_us": round(statistics.median(times), 2),
        "p99_us": round(times[int(0.99 * (len(times) - 1))], 2),
        "n": repeat,
    }


def raw_nvml_costs(nvml: Any, handle: Any) -> dict:
    """Median cost of each raw NVML call claw makes, on one GPU."""

    def newest_sample_us() -> int:
        return max(s.timeStamp for s in nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, 0)[1])

    def samples_since(ts: int) -> Callable[[], Any]:
        def call() -> Any:
            try:
                return nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, ts)
            except nvml.NVMLError:
                return None

        return call

    def guarded(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
        def call() -> Any:
            try:
                return fn(*args)
            except nvml.NVMLError:
                return None

        return call

    calls = {
        "nvmlDeviceGetPowerUsage": (guarded(nvml.nvmlDeviceGetPowerUsage, handle), 2000),
        "nvmlDeviceGetFieldValues[POWER_INSTANT]": (
            guarded(nvml.nvmlDeviceGetFieldValues, handle, [nvml.NVML_FI_DEV_POWER_INSTANT]),
            2000,
        ),
        "nvmlDeviceGetSamples(ts=0, full buffer)": (samples_since(0), 200),
        "nvmlDeviceGetSamples(ts=newest, nothing new)": (samples_since(newest_sample_us()), 200),
        "nvmlDeviceGetTotalEnergyConsumption": (guarded(nvml.nvmlDeviceGetTotalEnergyConsumption, handle), 100),
        "nvmlDeviceGetClockInfo(SM)": (guarded(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM), 2000),
        "nvmlDeviceGetUtilizationRates": (guarded(nvml.nvmlDeviceGetUtilizationRates, handle), 2000),
        "nvmlDeviceGetTemperature": (guarded(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU), 2000),
        "nvmlDeviceGetMemoryInfo": (guarded(nvml.nvmlDeviceGetMemoryInfo, handle), 2000),
        "nvmlDeviceGetPerformanceState": (guarded(nvml.nvmlDeviceGetPerformanceState, handle), 2000),
        "nvmlDeviceGetCurrentClocksEventReasons": (guarded(nvml.nvmlDeviceGetCurrentClocksEventReasons, handle), 2000),
        "nvmlDeviceGetComputeRunningProcesses": (guarded(nvml.nvmlDeviceGetComputeRunningProcesses, handle), 2000),
        "nvmlDeviceGetEnforcedPowerLimit": (guarded(nvml.nvmlDeviceGetEnforcedPowerLimit, handle), 500),
    }
    return {name: time_call(fn, repeat) for name, (fn, repeat) in calls.items()}


def source_costs(source: Any, index: int = 0) -> dict:
    """Cost of each TelemetrySource method, as the sampler would call them."""
    last = {"ts": 0.0}

    def power() -> None:
        samples = source.power_samples(index, last["ts"])
        if samples:
            last["ts"] = samples[-1].ts

    return {
        "snapshot": time_call(lambda: source.snapshot(index), 500),
        "power_samples": time_call(power, 500),
        "energy_counter_j": time_call(lambda: source.energy_counter_j(index), 100),
    }


def sampler_cpu_share(
    source: Any,
    gpus: list[int],
    seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Poll a source at the sampler's rates for `seconds`; CPU time of this process per wall second."""
    periods = {name: 1.0 / hz for name, hz in SAMPLER_RATES_HZ.items()}
    due = dict.fromkeys(periods, 0.0)
    last_ts = dict.fromkeys(gpus, 0.0)
    polls = 0
    start_wall, start_cpu = clock(), time.process_time()
    while (now := clock() - start_wall) < seconds:
        for name, period in periods.items():
            if now < due[name]:
                continue
            due[name] += period
            for i in gpus:
                polls += 1
                if name == "power_samples":
                    samples = source.power_samples(i, last_ts[i])
                    if samples:
                        last_ts[i] = samples[-1].ts
                elif name == "snapshot":
                    source.snapshot(i)
                else:
                    source.energy_counter_j(i)
        sleep(max(0.0, min(due.values()) - (clock() - start_wall)))
    cpu = time.process_time() - start_cpu
    wall = clock() - start_wall
    return {
        "seconds": round(wall, 2),
        "polls": polls,
        "cpu_us_per_poll": round(cpu / polls * 1e6, 1),
        "core_pct": round(cpu / wall * 100, 3),
    }


def fake_nvml_source() -> tuple[Any, Any]:
    from tests.test_nvml_source import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(processes=[(1, 1024**3)])])
    fake.advance(3.0)
    return fake, NvmlSource(nvml=fake, clock=time.time)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("replay", "fake", "nvml", "all"), default="all")
    parser.add_argument("--trace", type=Path, default=FIXTURE)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to poll at the sampler's rates")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if args.source in ("replay", "all"):
        replay = ReplaySource(args.trace)
        gpus = [s.index for s in replay.open()]
        results["replay"] = {"calls": source_costs(replay), "sampler": sampler_cpu_share(replay, gpus, args.seconds)}
    if args.source in ("fake", "all"):
        _fake, source = fake_nvml_source()
        source.open()
        results["fake_nvml"] = {"calls": source_costs(source), "sampler": sampler_cpu_share(source, [0], args.seconds)}
    if args.source == "nvml":
        import pynvml

        source = NvmlSource()
        statics = source.open()
        results["nvml"] = {
            "gpus": [s.name for s in statics],
            "raw_calls": raw_nvml_costs(pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)),
            "calls": source_costs(source),
            "sampler": sampler_cpu_share(source, [s.index for s in statics], args.seconds),
        }
        source.close()
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_results(results: dict) -> None:
    for name, block in results.items():
        print(f"== {name}")
        for section in ("raw_calls", "calls"):
            for call, cost in block.get(section, {}).items():
                print(f"  {call:48s} median {cost['median_us']:10.2f} µs   p99 {cost['p99_us']:10.2f} µs")
        sampler = block["sampler"]
        print(
            f"  sampler rates {SAMPLER_RATES_HZ}: {sampler['polls']} polls in {sampler['seconds']} s, "
            f"{sampler['cpu_us_per_poll']} µs CPU per poll, {sampler['core_pct']} % of a core"
        )


if __name__ == "__main__":
    raise SystemExit(main())
