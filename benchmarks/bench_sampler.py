"""CPU cost of the telemetry sampler as the session runs it: poll thread (power samples + snapshots, 4 Hz), energy
thread (counter at 1 Hz, or 2 Hz), ledger attribution, 1 Hz history. Process CPU time over a run, per wall second.

    python benchmarks/bench_sampler.py                       # replay of a real H200 trace + fake NVML with costs
    python benchmarks/bench_sampler.py --source nvml         # a real GPU (the device machine)

Sources:
- replay: tests/fixtures/traces/h200_decode_burst.jsonl.gz looping on the wall clock (cheap reads: the cost of
  claw's own code);
- fake-nvml: NvmlSource over the tests' fake NVML with the per-call CPU costs measured on an H200 burned as busy
  CPU (samples 0.3 ms, energy counter 2.8 ms, instant power 1.5 µs, processes 4.4 µs, other fields ~1 µs), so the
  total is what the driver would cost too;
- nvml: the real driver.
The baseline is the same process sleeping for the same time (measured in the same run); the target is < 1% of a
core (SPEC: sampler < 1% of a core).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from claw_tui.ledger import Ledger
from claw_tui.telemetry.sampler import TelemetrySampler

TRACE = ROOT / "tests" / "fixtures" / "traces" / "h200_decode_burst.jsonl.gz"
TARGET_PCT = 1.0

# CPU per call measured on the H200 (shared/reference/nvml.md, benchmarks/device/h200_results_run2.json).
H200_CALL_COST_S = {
    "nvmlDeviceGetSamples": 300e-6,
    "nvmlDeviceGetTotalEnergyConsumption": 2.8e-3,
    "nvmlDeviceGetFieldValues": 1.5e-6,
    "nvmlDeviceGetComputeRunningProcesses": 4.4e-6,
    "nvmlDeviceGetMemoryInfo": 3.7e-6,
}
DEFAULT_CALL_COST_S = 0.8e-6


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def fake_nvml_source(gpus: int):
    """NvmlSource over a fake driver that runs on the wall clock and burns the H200's CPU cost per call."""
    from claw_tui.telemetry.nvml import NvmlSource
    from tests.test_nvml_source import FakeGpu, FakeNvml

    class CostlyNvml(FakeNvml):
        def __getattribute__(self, name: str):
            target = object.__getattribute__(self, name)
            if not name.startswith("nvmlDevice") or not callable(target):
                return target
            cost = H200_CALL_COST_S.get(name, DEFAULT_CALL_COST_S)

            def call(*args, **kwargs):
                now_us = int(time.time() * 1e6)
                if now_us > object.__getattribute__(self, "now_us"):
                    FakeNvml.advance(self, (now_us - object.__getattribute__(self, "now_us")) / 1e6)
                busy(cost)
                return target(*args, **kwargs)

            return call

    fake = CostlyNvml(
        [FakeGpu(uuid=f"GPU-{i}", watts=120.0 + 50 * i, processes=[(4242, 16 * 1024**3)]) for i in range(gpus)]
    )
    fake.now_us = int(time.time() * 1e6) - 3_000_000
    fake.advance(3.0)
    return NvmlSource(nvml=fake, process_describer=lambda pid: ("ollama", True))


def make_source(kind: str, gpus: int):
    if kind == "replay":
        from claw_tui.telemetry.replay import ReplaySource

        return ReplaySource(TRACE)
    if kind == "fake-nvml":
        return fake_nvml_source(gpus)
    from claw_tui.telemetry.nvml import NvmlSource

    return NvmlSource()


def run_sampler(kind: str, seconds: float, energy_interval_s: float, gpus: int = 1) -> dict:
    source = make_source(kind, gpus)
    ledger = Ledger()
    sampler = TelemetrySampler(source, poll_interval_s=0.25, energy_interval_s=energy_interval_s)
    sampler.add_power_listener(ledger.add_power)
    sampler.start()
    ledger.set_gpus(range(sampler.gpu_count))
    time.sleep(1.0)  # past the first polls
    cpu0, wall0, polls0, reads0 = time.process_time(), time.perf_counter(), sampler.polls, sampler.energy_reads
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    polls, reads = sampler.polls - polls0, sampler.energy_reads - reads0
    stats = [sampler.trace_stats(i) for i in range(sampler.gpu_count)]
    sampler.stop()
    return {
        "source": kind,
        "gpus": sampler.gpu_count,
        "energy_interval_s": energy_interval_s,
        "seconds": round(wall, 2),
        "cpu_s": round(cpu, 4),
        "core_pct": round(cpu / wall * 100, 3),
        "polls": polls,
        "energy_reads": reads,
        "trace": stats,
        "state": sampler.state,
    }


def baseline(seconds: float) -> dict:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"seconds": round(wall, 2), "core_pct": round(cpu / wall * 100, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        choices=("replay", "fake-nvml", "nvml", "all"),
        default="all",
        help="all = replay and fake-nvml (no GPU needed)",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gpus", type=int, default=1, help="GPUs of the fake NVML")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    kinds = ("replay", "fake-nvml") if args.source == "all" else (args.source,)
    results = {"baseline": baseline(min(args.seconds, 5.0)), "runs": []}
    print(f"baseline (sleeping): {results['baseline']['core_pct']:.3f}% of a core")
    for kind in kinds:
        for energy_interval_s in (1.0, 0.5):
            run = run_sampler(kind, args.seconds, energy_interval_s, args.gpus)
            run["sampler_pct"] = round(run["core_pct"] - results["baseline"]["core_pct"], 3)
            results["runs"].append(run)
            trace = run["trace"][0] if run["trace"] else {}
            print(
                f"{kind:9} gpus {run['gpus']}  counter every {energy_interval_s:.1f} s: "
                f"{run['sampler_pct']:.3f}% of a core  ({run['polls']} polls, {run['energy_reads']} counter reads "
                f"in {run['seconds']} s; trace {trace.get('rate_hz')} Hz, {trace.get('gaps')} gaps)  "
                f"{'OK' if run['sampler_pct'] < TARGET_PCT else 'OVER TARGET'}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
