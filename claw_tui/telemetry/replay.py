"""Telemetry traces: record any TelemetrySource to a file, and replay a file as a TelemetrySource.

Format: JSON lines, gzip-compressed when the name ends in `.gz`. Times are seconds relative to the start.

    {"type": "header", "version": 1, "source": "nvml", "host": ..., "recorded_at": <epoch s>,
     "gpus": [GpuStatic], "meta": {}}
    {"type": "power", "gpu": 0, "t": <poll time>, "samples": [[t, watts], ...]}
    {"type": "snapshot", "gpu": 0, "t": ..., "power_w": ..., ... GpuSnapshot fields ..., "processes": [...]}
    {"type": "energy", "gpu": 0, "t": <middle of the call>, "j": <counter, joules>}
    {"type": "mark", "t": ..., "label": "load_start"}          (annotations; replay ignores them)
    {"type": "end", "t": <duration>}

A file without its end record is treated as truncated.
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import io
import itertools
import json
import math
import socket
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from claw_tui.telemetry.types import (
    GpuProcess,
    GpuSnapshot,
    GpuStatic,
    PowerSample,
    TelemetryError,
    TelemetrySource,
)

TRACE_VERSION = 1
# The NVML driver keeps ~2.4 s of 20 ms samples; a replay forgets older ones the same way.
DEFAULT_BUFFER_S = 2.4

_SNAPSHOT_SKIP = ("index", "name", "ts")
_SNAPSHOT_FIELDS = tuple(f.name for f in dataclasses.fields(GpuSnapshot) if f.name not in _SNAPSHOT_SKIP)
_STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(GpuStatic))


# ----- the trace in memory --------------------------------------------------------------------------------------


@dataclass
class Trace:
    """A loaded trace. Times are seconds from the start of the recording."""

    path: str
    header: dict[str, Any]
    statics: list[GpuStatic]
    duration_s: float
    power: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    snapshots: dict[int, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    energy: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    marks: list[tuple[float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class TraceStats:
    """What a trace holds for one GPU, and how well its samples agree with its energy counter."""

    gpu: int
    samples: int
    duration_s: float
    median_dt_s: float | None
    max_gap_s: float | None
    gaps: int  # sample intervals longer than 1.5x the median
    duplicates: int
    mean_power_w: float | None
    counter_delta_j: float | None
    integral_j: float | None  # trapezoid integral of the samples over the counter's window

    @property
    def counter_error_pct(self) -> float | None:
        if not self.counter_delta_j or self.integral_j is None:
            return None
        return (self.integral_j - self.counter_delta_j) / self.counter_delta_j * 100.0


# ----- writing -------------------------------------------------------------------------------------------------


def _open_for_writing(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        raw = open(path, "wb")  # noqa: SIM115 - closed through the wrapper
        # mtime=0 keeps the same trace byte-identical across writes.
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0), encoding="utf-8")
    return open(path, "w", encoding="utf-8")


class TraceWriter:
    """Writes one trace file record by record; close() (or the with-block) writes the end record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._out = _open_for_writing(self.path)
        except OSError as err:
            raise TelemetryError(f"cannot write trace {self.path}: {err.strerror or err}") from err

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.close()

    def header(
        self,
        statics: Iterable[GpuStatic],
        *,
        source: str,
        host: str,
        recorded_at: float,
        meta: dict[str, Any] | None = None,
    ) -> None:
        gpus = [_static_to_dict(s) for s in statics]
        self._write(
            {
                "type": "header",
                "version": TRACE_VERSION,
                "source": source,
                "host": host,
                "recorded_at": recorded_at,
                "gpus": gpus,
                "meta": meta or {},
            }
        )

    def power(self, gpu: int, t: float, samples: Iterable[tuple[float, float]]) -> None:
        rows = [[_round_t(ts), round(watts, 3)] for ts, watts in samples]
        if rows:
            self._write({"type": "power", "gpu": gpu, "t": _round_t(t), "samples": rows})

    def snapshot(self, gpu: int, t: float, snap: GpuSnapshot | dict[str, Any]) -> None:
        data = dataclasses.asdict(snap) if isinstance(snap, GpuSnapshot) else dict(snap)
        record = {"type": "snapshot", "gpu": gpu, "t": _round_t(t)}
        record.update({key: data.get(key) for key in _SNAPSHOT_FIELDS})
        self._write(record)

    def energy(self, gpu: int, t: float, joules: float) -> None:
        self._write({"type": "energy", "gpu": gpu, "t": _round_t(t), "j": round(joules, 3)})

    def mark(self, t: float, label: str) -> None:
        self._write({"type": "mark", "t": _round_t(t), "label": label})

    def end(self, duration_s: float) -> None:
        self._write({"type": "end", "t": _round_t(duration_s)})

    def close(self) -> None:
        self._out.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")


def write_trace(trace: Trace, path: str | Path) -> None:
    """Write a loaded (possibly edited) trace back to a file, records in time order."""
    records: list[tuple[float, int, Callable[[TraceWriter], None]]] = []
    for gpu, samples in trace.power.items():
        # One power record per 250 ms of samples, as a recording would have them.
        for chunk in _chunks_by_time(samples, 0.25):
            records.append((chunk[-1][0], 0, partial(TraceWriter.power, gpu=gpu, t=chunk[-1][0], samples=chunk)))
    for gpu, snaps in trace.snapshots.items():
        for t, data in snaps:
            records.append((t, 1, partial(TraceWriter.snapshot, gpu=gpu, t=t, snap=data)))
    for gpu, readings in trace.energy.items():
        for t, joules in readings:
            records.append((t, 2, partial(TraceWriter.energy, gpu=gpu, t=t, joules=joules)))
    for t, label in trace.marks:
        records.append((t, 3, partial(TraceWriter.mark, t=t, label=label)))
    records.sort(key=lambda r: (r[0], r[1]))
    with TraceWriter(path) as writer:
        writer.header(
            trace.statics,
            source=trace.header.get("source", "unknown"),
            host=trace.header.get("host", ""),
            recorded_at=trace.header.get("recorded_at", 0.0),
            meta=trace.header.get("meta"),
        )
        for _, _, emit in records:
            emit(writer)
        writer.end(trace.duration_s)


def _chunks_by_time(samples: list[tuple[float, float]], width_s: float) -> list[list[tuple[float, float]]]:
    chunks: list[list[tuple[float, float]]] = []
    for sample in samples:
        if not chunks or sample[0] - chunks[-1][0][0] >= width_s:
            chunks.append([])
        chunks[-1].append(sample)
    return chunks


# ----- recording -----------------------------------------------------------------------------------------------


def record_trace(
    source: TelemetrySource,
    path: str | Path,
    seconds: float,
    *,
    snapshot_hz: float = 4.0,
    energy_hz: float = 2.0,
    power_poll_s: float = 0.25,
    on_progress: Callable[[float, float], None] | None = None,
    statics: list[GpuStatic] | None = None,
    meta: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> list[TraceStats]:
    """Record `seconds` of telemetry from `source` into `path` and return per-GPU stats of what was written.

    Opens (and at the end closes) the source unless `statics` says it is already open.
    `on_progress(elapsed_s, seconds)` is called about once per power poll.
    """
    owns_source = statics is None
    if statics is None:
        statics = source.open()
    try:
        with TraceWriter(path) as writer:
            recorder = _Recorder(writer, source, statics, clock)
            writer.header(
                statics,
                source=getattr(source, "kind", "unknown"),
                host=socket.gethostname(),
                recorded_at=recorder.start,
                meta=meta,
            )
            tasks = [
                _Periodic(recorder.poll_power, power_poll_s),
                _Periodic(recorder.read_energy, 1.0 / energy_hz),
                _Periodic(recorder.take_snapshots, 1.0 / snapshot_hz),
            ]
            try:
                _run_tasks(tasks, seconds, recorder.elapsed, sleep, on_progress)
            except KeyboardInterrupt:
                pass  # ctrl-c ends the recording early; what was recorded is still a complete trace
            recorder.poll_power()
            recorder.read_energy()
            if on_progress is not None:
                on_progress(min(recorder.elapsed(), seconds), seconds)
            writer.end(recorder.elapsed())
    finally:
        if owns_source:
            source.close()
    return summarize_trace(load_trace(path))


class _Recorder:
    """Reads a source and writes what it reads, with times relative to the start."""

    def __init__(
        self, writer: TraceWriter, source: TelemetrySource, statics: list[GpuStatic], clock: Callable[[], float]
    ):
        self.writer = writer
        self.source = source
        self.clock = clock
        self.start = clock()
        self.indexes = [s.index for s in statics]
        self.last_sample_ts = dict.fromkeys(self.indexes, self.start)  # older samples are not part of the trace

    def elapsed(self) -> float:
        return self.clock() - self.start

    def poll_power(self) -> None:
        t = self.elapsed()
        for i in self.indexes:
            samples = self.source.power_samples(i, self.last_sample_ts[i])
            if samples:
                self.last_sample_ts[i] = samples[-1].ts
                self.writer.power(i, t, [(s.ts - self.start, s.watts) for s in samples])

    def read_energy(self) -> None:
        for i in self.indexes:
            before = self.clock()
            joules = self.source.energy_counter_j(i)
            # The call takes ~3 ms on NVML: its middle is the best guess of when the counter was read.
            if joules is not None:
                self.writer.energy(i, (before + self.clock()) / 2 - self.start, joules)

    def take_snapshots(self) -> None:
        for i in self.indexes:
            snap = self.source.snapshot(i)
            self.writer.snapshot(i, snap.ts - self.start, snap)


@dataclasses.dataclass
class _Periodic:
    action: Callable[[], None]
    period_s: float
    due: float = 0.0  # seconds into the recording


def _run_tasks(
    tasks: list[_Periodic],
    seconds: float,
    elapsed_s: Callable[[], float],
    sleep: Callable[[float], None],
    on_progress: Callable[[float, float], None] | None,
) -> None:
    """Run each task on its period until `seconds` have passed."""
    while True:
        elapsed = elapsed_s()
        if elapsed >= seconds:
            return
        for task in tasks:
            if elapsed >= task.due:
                task.action()
                # Skip missed slots rather than running a task several times in a row to catch up.
                task.due += task.period_s * (math.floor((elapsed - task.due) / task.period_s) + 1)
        if on_progress is not None:
            on_progress(min(elapsed, seconds), seconds)
        wait = min(min(task.due for task in tasks), seconds) - elapsed_s()
        if wait > 0:
            sleep(wait)


# ----- reading -------------------------------------------------------------------------------------------------


def _open_for_reading(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def load_trace(path: str | Path) -> Trace:
    """Read a whole trace; raise TelemetryError naming the file and line for anything wrong with it."""
    path = Path(path)
    try:
        stream = _open_for_reading(path)
    except OSError as err:
        raise TelemetryError(f"cannot read trace {path}: {err.strerror or err}") from err
    trace: Trace | None = None
    line_no = 0
    with stream:
        try:
            for line_no, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                record = _parse_line(path, line_no, line)
                if trace is None:
                    trace = _start_trace(path, line_no, record)
                elif _add_record(path, line_no, trace, record):
                    return _finished(trace)
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as err:
            raise TelemetryError(f"trace {path}, line {line_no + 1}: unreadable or truncated ({err})") from err
    if trace is None:
        raise TelemetryError(f"trace {path}: empty file, not a claw trace")
    raise TelemetryError(f"trace {path}, line {line_no}: truncated (the end record is missing)")


def _parse_line(path: Path, line_no: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise TelemetryError(f"trace {path}, line {line_no}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise TelemetryError(f"trace {path}, line {line_no}: a record must be an object with a 'type'")
    return record


def _start_trace(path: Path, line_no: int, record: dict[str, Any]) -> Trace:
    if record["type"] != "header":
        raise TelemetryError(f"trace {path}, line {line_no}: not a claw trace (the first record is not a header)")
    if record.get("version") != TRACE_VERSION:
        raise TelemetryError(
            f"trace {path}, line {line_no}: trace version {record.get('version')!r} (this claw reads {TRACE_VERSION})"
        )
    try:
        statics = [_static_from_dict(g) for g in record["gpus"]]
    except (KeyError, TypeError, ValueError) as err:
        raise TelemetryError(f"trace {path}, line {line_no}: bad 'gpus' in the header ({err!r})") from err
    if not statics:
        raise TelemetryError(f"trace {path}, line {line_no}: the header lists no GPU")
    trace = Trace(path=str(path), header=record, statics=statics, duration_s=0.0)
    for static in statics:
        trace.power[static.index] = []
        trace.snapshots[static.index] = []
        trace.energy[static.index] = []
    return trace


def _add_record(path: Path, line_no: int, trace: Trace, record: dict[str, Any]) -> bool:
    """Add one record to the trace; True once the end record is read."""
    kind = record["type"]
    try:
        if kind == "end":
            trace.duration_s = float(record["t"])
            return True
        if kind == "mark":
            trace.marks.append((float(record["t"]), str(record.get("label", ""))))
            return False
        if kind not in ("power", "snapshot", "energy"):
            return False  # a newer writer's record: skip it
        gpu = int(record["gpu"])
        if gpu not in trace.power:
            raise ValueError(f"GPU {gpu} is not in the header")
        if kind == "power":
            trace.power[gpu].extend((float(t), float(w)) for t, w in record["samples"])
        elif kind == "energy":
            trace.energy[gpu].append((float(record["t"]), float(record["j"])))
        else:
            trace.snapshots[gpu].append((float(record["t"]), {k: record.get(k) for k in _SNAPSHOT_FIELDS}))
    except (KeyError, TypeError, ValueError) as err:
        raise TelemetryError(f"trace {path}, line {line_no}: bad {kind} record ({err!r})") from err
    return False


def _finished(trace: Trace) -> Trace:
    for table in (trace.power, trace.energy, trace.snapshots):
        for rows in table.values():
            rows.sort(key=lambda row: row[0])
    if trace.duration_s <= 0:
        raise TelemetryError(f"trace {trace.path}: the recording has no duration")
    return trace


def _static_to_dict(static: GpuStatic) -> dict[str, Any]:
    data = dataclasses.asdict(static)
    data["supported_sm_clocks_mhz"] = list(static.supported_sm_clocks_mhz)
    return data


def _static_from_dict(data: dict[str, Any]) -> GpuStatic:
    values = {key: data[key] for key in _STATIC_FIELDS if key in data}
    values["index"] = int(values["index"])
    values["name"] = str(values["name"])
    values["supported_sm_clocks_mhz"] = tuple(int(c) for c in values.get("supported_sm_clocks_mhz") or ())
    return GpuStatic(**values)


def _snapshot_from_dict(index: int, name: str, ts: float, data: dict[str, Any]) -> GpuSnapshot:
    values = dict(data)
    values["processes"] = [GpuProcess(**p) for p in values.get("processes") or []]
    values["clock_event_reasons"] = list(values.get("clock_event_reasons") or [])
    return GpuSnapshot(index=index, name=name, ts=ts, **values)


# ----- analysis ------------------------------------------------------------------------------------------------


def trapezoid_energy_j(samples: list[tuple[float, float]], t_start: float, t_end: float) -> float:
    """Energy (J) of a power trace between two times, power linearly interpolated between samples."""
    if len(samples) < 2 or t_end <= t_start:
        return 0.0
    times = [t for t, _ in samples]
    points = [(t_start, _interpolate(samples, times, t_start))]
    points += [s for s in samples if t_start < s[0] < t_end]
    points.append((t_end, _interpolate(samples, times, t_end)))
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in itertools.pairwise(points))


def _interpolate(samples: list[tuple[float, float]], times: list[float], t: float) -> float:
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return samples[0][1]
    if i >= len(samples):
        return samples[-1][1]
    (t0, w0), (t1, w1) = samples[i - 1], samples[i]
    return w0 if t1 == t0 else w0 + (w1 - w0) * (t - t0) / (t1 - t0)


def summarize_trace(trace: Trace) -> list[TraceStats]:
    return [_gpu_stats(trace, static.index) for static in trace.statics]


def _gpu_stats(trace: Trace, gpu: int) -> TraceStats:
    samples = trace.power.get(gpu, [])
    times = [t for t, _ in samples]
    dts = [b - a for a, b in itertools.pairwise(times)]
    positive = [dt for dt in dts if dt > 0]
    median_dt = statistics.median(positive) if positive else None
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    mean_power = trapezoid_energy_j(samples, times[0], times[-1]) / span if span > 0 else None
    energy = trace.energy.get(gpu, [])
    counter_delta = integral = None
    if len(energy) >= 2 and len(samples) >= 2:
        (t0, j0), (t1, j1) = energy[0], energy[-1]
        counter_delta = j1 - j0
        integral = trapezoid_energy_j(samples, t0, t1)
    return TraceStats(
        gpu=gpu,
        samples=len(samples),
        duration_s=trace.duration_s,
        median_dt_s=median_dt,
        max_gap_s=max(dts) if dts else None,
        gaps=sum(1 for dt in dts if median_dt and dt > 1.5 * median_dt),
        duplicates=sum(1 for dt in dts if dt <= 0),
        mean_power_w=mean_power,
        counter_delta_j=counter_delta,
        integral_j=integral,
    )


# ----- replay --------------------------------------------------------------------------------------------------


class ReplaySource:
    """Plays a recorded trace as a TelemetrySource, on the wall clock or on any clock given.

    The trace's time zero maps to `start_ts` (or the clock at open()). With `loop`, the trace repeats with its
    recorded duration as the period (trimmed so that the last sample and the next pass's first one are one
    sample interval apart) and the energy counter keeps rising across loops; without it, readings stop at the
    end of the trace. Output is a pure function of the clock, so a fake clock gives the same
    readings every time.
    """

    kind = "replay"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        loop: bool = True,
        start_ts: float | None = None,
        buffer_s: float = DEFAULT_BUFFER_S,
    ):
        self.path = Path(path)
        self._clock = clock
        self._loop = loop
        self._start_ts = start_ts
        self._buffer_s = buffer_s
        self._trace: Trace | None = None
        self.period_s = 0.0
        self._origin = 0.0
        self._last_sample_ts: dict[int, float] = {}
        self._samples: dict[int, list[tuple[float, float]]] = {}
        self._sample_times: dict[int, list[float]] = {}
        self._snapshot_times: dict[int, list[float]] = {}
        self._energy_times: dict[int, list[float]] = {}

    @property
    def trace(self) -> Trace:
        if self._trace is None:
            raise TelemetryError(f"replay of {self.path} is not open")
        return self._trace

    def open(self) -> list[GpuStatic]:
        if self._trace is None:
            trace = load_trace(self.path)
            self.period_s = _loop_period(trace)
            for static in trace.statics:
                i = static.index
                self._samples[i] = [s for s in trace.power[i] if s[0] >= 0]
                self._sample_times[i] = [t for t, _ in self._samples[i]]
                self._snapshot_times[i] = [t for t, _ in trace.snapshots[i]]
                self._energy_times[i] = [t for t, _ in trace.energy[i]]
            self._trace = trace
        self._origin = self._start_ts if self._start_ts is not None else self._clock()
        self._last_sample_ts = {}
        return list(self._trace.statics)

    def close(self) -> None:
        self._trace = None

    def snapshot(self, index: int) -> GpuSnapshot:
        trace = self.trace
        static = self._static(index)
        snaps = trace.snapshots[index]
        if not snaps:
            return GpuSnapshot(
                index=index,
                name=static.name,
                ts=self._clock(),
                power_limit_w=static.power_limit_w,
                vram_total_mib=static.vram_total_mib,
            )
        loop, position = self._position(self._clock() - self._origin)
        i = bisect.bisect_right(self._snapshot_times[index], position) - 1
        if i < 0:  # before the first snapshot of this pass: the previous pass's last one, if there was one
            if loop > 0:
                loop, i = loop - 1, len(snaps) - 1
            else:
                i = 0
        t, data = snaps[i]
        return _snapshot_from_dict(index, static.name, self._origin + loop * self.period_s + t, data)

    def power_samples(self, index: int, since_ts: float) -> list[PowerSample]:
        self._static(index)
        samples = self._samples[index]
        if not samples:
            return []
        now = self._clock()
        after = max(since_ts, self._last_sample_ts.get(index, -math.inf), now - self._buffer_s)
        period = self.period_s
        # A pass's last samples may lie past its period (when its first sample is late): start one pass early.
        first_loop = max(0, math.floor((after - self._origin) / period) - 1)
        last_loop = max(0, math.floor((now - self._origin) / period))
        if not self._loop:
            last_loop = min(last_loop, 0)
        times = self._sample_times[index]
        out: list[PowerSample] = []
        for loop in range(first_loop, last_loop + 1):
            base = self._origin + loop * period
            start = max(0, bisect.bisect_left(times, after - base) - 1)
            for t, watts in samples[start:]:
                ts = base + t
                if ts > now:
                    break
                if ts > after:
                    out.append(PowerSample(ts=ts, watts=watts))
        if out:
            self._last_sample_ts[index] = out[-1].ts
        return out

    def energy_counter_j(self, index: int) -> float | None:
        trace = self.trace
        self._static(index)
        readings = trace.energy[index]
        if not readings:
            return None
        if len(readings) == 1:
            return readings[0][1]
        loop, position = self._position(self._clock() - self._origin)
        (t_first, j_first), (t_last, j_last) = readings[0], readings[-1]
        # Mean rate over the recording carries the counter across the stretch before the first and after the
        # last reading, so the counter is continuous where one pass meets the next.
        rate = (j_last - j_first) / (t_last - t_first) if t_last > t_first else 0.0
        per_loop = rate * self.period_s
        if position <= t_first:
            value = j_first - (t_first - position) * rate
        elif position >= t_last:
            value = j_last + (position - t_last) * rate
        else:
            value = _interpolate(readings, self._energy_times[index], position)
        return value + loop * per_loop

    def _position(self, elapsed: float) -> tuple[int, float]:
        """(pass number, seconds into that pass) for a time since the origin."""
        duration = self.period_s
        if elapsed <= 0:
            return 0, 0.0
        if not self._loop:
            return 0, min(elapsed, duration)
        loop = math.floor(elapsed / duration)
        return loop, elapsed - loop * duration

    def _static(self, index: int) -> GpuStatic:
        for static in self.trace.statics:
            if static.index == index:
                return static
        raise TelemetryError(f"trace {self.path} has no GPU with index {index}")


def _loop_period(trace: Trace) -> float:
    """The replay period: the span of GPU 0's samples plus one median interval, so that where one pass meets
    the next, the samples are one interval apart, as anywhere else."""
    samples = trace.power[trace.statics[0].index]
    if len(samples) < 2:
        return trace.duration_s
    times = [t for t, _ in samples]
    intervals = [b - a for a, b in itertools.pairwise(times) if b > a]
    period = times[-1] + statistics.median(intervals) - max(0.0, times[0])
    return period if 0 < period <= trace.duration_s + 1.0 else trace.duration_s


def _round_t(t: float) -> float:
    return round(t, 6)


__all__ = [
    "DEFAULT_BUFFER_S",
    "TRACE_VERSION",
    "ReplaySource",
    "Trace",
    "TraceStats",
    "TraceWriter",
    "load_trace",
    "record_trace",
    "summarize_trace",
    "trapezoid_energy_j",
    "write_trace",
]
