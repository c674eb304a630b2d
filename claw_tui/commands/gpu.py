"""`claw gpu`: GPU status like gpustat, from the same telemetry sources the console uses; record and replay traces."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from claw_tui.commands.common import add_common_options, reader_gone
from claw_tui.telemetry.nvml import NvmlSource, NvmlUnavailable
from claw_tui.telemetry.replay import ReplaySource, TraceStats, record_trace
from claw_tui.telemetry.types import (
    GpuProcess,
    GpuSnapshot,
    GpuStatic,
    TelemetryError,
    TelemetrySource,
)

NO_DRIVER_HINT = "try 'claw gpu --demo' (a simulated GPU) or 'claw gpu --replay FILE'"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "gpu",
        help="GPU status (power, energy, clocks, VRAM); record or replay a telemetry trace",
        description="Show GPU status once, watch it, record a telemetry trace to a file, or replay one.",
    )
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help='print {"gpus": [...]} as JSON')
    parser.add_argument("--watch", action="store_true", help="refresh until ctrl-c")
    parser.add_argument(
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes with --watch (default 1)",
    )
    parser.add_argument("--count", type=int, default=None, metavar="N", help="with --watch: stop after N refreshes")
    parser.add_argument(
        "--record", metavar="FILE", help="record a telemetry trace (JSON lines; gzip if FILE ends in .gz)"
    )
    parser.add_argument(
        "--seconds", type=_positive_float, default=10.0, metavar="N", help="how long to record (default 10)"
    )
    parser.add_argument(
        "--replay",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="read telemetry from a recorded trace instead of the GPU",
    )
    parser.set_defaults(run=run_gpu)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def run_gpu(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    try:
        source = make_source(args)
        statics = source.open()
    except NvmlUnavailable as err:
        _fail(f"no NVIDIA GPU/driver found (NVML: {err.reason}); {NO_DRIVER_HINT}")
        return 1
    except TelemetryError as err:
        _fail(str(err))
        return 1
    try:
        if args.record:
            return record(source, statics, args, out)
        if args.watch:
            return watch(source, statics, args, out)
        show(source, statics, args.json, out)
        return 0
    except TelemetryError as err:
        _fail(str(err))
        return 1
    except BrokenPipeError:
        # `claw gpu --watch --json | head`: the reader left; exit quietly, as other filters do.
        return reader_gone()
    finally:
        source.close()


def make_source(args: argparse.Namespace) -> TelemetrySource:
    replay = getattr(args, "replay", None)
    if replay:
        return ReplaySource(replay)
    if getattr(args, "demo", False):
        return _simulated_source()
    return NvmlSource()


def _simulated_source() -> TelemetrySource:
    from claw_tui.sim.gpu import SimGPU, SimTelemetrySource

    return SimTelemetrySource([SimGPU()])


def _fail(message: str) -> None:
    print(f"claw: {message}", file=sys.stderr)


# ----- one-shot and watch -----------------------------------------------------------------------------------------


def read_snapshots(source: TelemetrySource, statics: list[GpuStatic]) -> list[GpuSnapshot]:
    """A snapshot of every GPU, with the energy counter filled in (snapshots leave it out: it is slow on NVML)."""
    snapshots = []
    for static in statics:
        snap = source.snapshot(static.index)
        if snap.energy_j is None:
            snap.energy_j = source.energy_counter_j(static.index)
        snapshots.append(snap)
    return snapshots


def gpus_json(snapshots: list[GpuSnapshot]) -> dict[str, Any]:
    return {"gpus": [snap.to_json() for snap in snapshots]}


def show(source: TelemetrySource, statics: list[GpuStatic], as_json: bool, out: IO[str]) -> None:
    snapshots = read_snapshots(source, statics)
    if as_json:
        print(json.dumps(gpus_json(snapshots)), file=out)
    else:
        print(format_table(snapshots, statics, source.kind), file=out)


def watch(source: TelemetrySource, statics: list[GpuStatic], args: argparse.Namespace, out: IO[str]) -> int:
    clear = "\x1b[H\x1b[2J" if out.isatty() and not args.json else ""
    lost = False  # the GPU or driver went away: reopen before the next read
    shown = 0
    try:
        while args.count is None or shown < args.count:
            if shown:
                time.sleep(args.interval)
            shown += 1
            if lost:
                try:
                    statics = source.open()
                except TelemetryError:
                    continue
                lost = False
            try:
                snapshots = read_snapshots(source, statics)
            except TelemetryError as err:
                _fail(f"{err}; retrying every {args.interval:g} s")
                lost = True
                continue
            text = json.dumps(gpus_json(snapshots)) if args.json else format_table(snapshots, statics, source.kind)
            print(clear + text, file=out, flush=True)
    except KeyboardInterrupt:
        pass
    return 0


# ----- the table ------------------------------------------------------------------------------------------------


def format_table(snapshots: list[GpuSnapshot], statics: list[GpuStatic], kind: str) -> str:
    driver = next((s.driver for s in statics if s.driver), "")
    taken = time.localtime(snapshots[0].ts) if snapshots else time.localtime()
    header = f"{time.strftime('%Y-%m-%d %H:%M:%S', taken)}  source: {kind}" + (f"  driver {driver}" if driver else "")
    lines = [header]
    for snap in snapshots:
        lines.append(format_gpu_line(snap))
        lines.extend(format_process_line(p) for p in snap.processes)
    return "\n".join(lines)


def format_gpu_line(snap: GpuSnapshot) -> str:
    reasons = ",".join(snap.clock_event_reasons) or "-"
    return " | ".join(
        (
            f"[{snap.index}] {snap.name}",
            f"{_num(snap.power_w, '.0f')} / {_num(snap.power_limit_w, '.0f')} W",
            format_energy(snap.energy_j),
            f"SM {_num(snap.sm_clock_mhz)} MHz  mem {_num(snap.mem_clock_mhz)} MHz",
            f"{_num(snap.util_pct, '.0f')} %",
            f"{_num(snap.temp_c, '.0f')} °C",
            f"{_num(snap.vram_used_mib, '.0f')} / {_num(snap.vram_total_mib, '.0f')} MiB",
            snap.pstate or "N/A",
            reasons,
        )
    )


def format_process_line(process: GpuProcess) -> str:
    runner = "  [ollama runner]" if process.is_ollama_runner else ""
    return f"    └ {process.name} (pid {process.pid})  {_num(process.vram_mib, '.0f')} MiB{runner}"


def format_energy(joules: float | None) -> str:
    if joules is None:
        return "N/A J"
    for unit, scale in (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3)):
        if abs(joules) >= scale:
            return f"{joules / scale:.2f} {unit}"
    return f"{joules:.1f} J"


def _num(value: float | int | None, spec: str = "") -> str:
    return "N/A" if value is None else format(value, spec)


# ----- recording --------------------------------------------------------------------------------------------------


def record(source: TelemetrySource, statics: list[GpuStatic], args: argparse.Namespace, out: IO[str]) -> int:
    progress = _progress_printer(sys.stderr) if sys.stderr.isatty() else None
    stats = record_trace(source, args.record, args.seconds, statics=statics, on_progress=progress)
    if progress is not None:
        print(file=sys.stderr)
    print(format_record_summary(args.record, stats), file=out)
    return 0


def _progress_printer(err: IO[str]) -> Callable[[float, float], None]:
    def show_progress(elapsed: float, total: float) -> None:
        err.write(f"\rrecording {elapsed:5.1f} / {total:.1f} s")
        err.flush()

    return show_progress


def format_record_summary(path: str, stats: list[TraceStats]) -> str:
    duration = stats[0].duration_s if stats else 0.0
    lines = [f"recorded {duration:.1f} s to {path}"]
    for s in stats:
        dt = "N/A" if s.median_dt_s is None else f"{s.median_dt_s * 1000:.1f} ms"
        mean = _num(s.mean_power_w, ".1f")
        line = f"  GPU {s.gpu}: {s.samples} power samples (median Δt {dt}, {s.gaps} gaps), mean power {mean} W"
        if s.counter_delta_j is not None and s.integral_j is not None:
            error = s.counter_error_pct
            line += (
                f", energy counter Δ {s.counter_delta_j:.1f} J vs sample integral {s.integral_j:.1f} J"
                f" ({'N/A' if error is None else format(error, '+.2f')} %)"
            )
        else:
            line += ", no energy counter"
        lines.append(line)
    return "\n".join(lines)
