"""The telemetry sampler: a poll thread that reads a TelemetrySource into bounded ring buffers, and an energy thread.

Power samples are read every `poll_interval_s` (NVML keeps ~2.4 s of 20 ms samples, so ≤ 1 s loses none), with a
snapshot of every GPU. The energy counter costs ~3 ms a call on NVML, so it is read on its own thread at most every
`energy_interval_s` (never faster than 2 Hz): a slow counter read never delays the power samples.

Listeners get each new batch of power samples in order (the ledger attributes energy from them), the latest
snapshots once a second (the store persists them), the GPU list whenever the source opens or fails (the ledger
learns which GPUs meter energy), and the sampler itself after every poll (alerts). When the source fails the
sampler keeps running, reports the error, and reopens the source every few seconds until it comes back.

Memory is bounded: full-rate power for `history_minutes`, 4 Hz clock/util history for the same span, and 1 Hz
history points for `history_hours_1hz`.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from claw_tui.telemetry.types import (
    GpuSnapshot,
    GpuStatic,
    PowerSample,
    TelemetryError,
    TelemetrySource,
)

log = logging.getLogger(__name__)

PowerListener = Callable[[int, list[PowerSample]], None]
SnapshotListener = Callable[[list[GpuSnapshot]], None]
GpusListener = Callable[[list[GpuStatic]], None]

FULL_RATE_HZ = 50
RECENT_HZ = 4  # clock/util history points kept at up to this rate for `history_minutes`
REOPEN_INTERVAL_S = 5.0
MIN_ENERGY_INTERVAL_S = 0.5  # the counter costs ~3 ms of CPU per call: never more than 2 Hz
SAMPLES_READ_S_PER_GPU = 0.125  # 4 GPUs: sample buffers read every 0.5 s; 8 and more: every second
COUNTER_READS_PER_S = 2.0  # at most this many counter reads a second over all GPUs (~0.6% of a core on NVML)
GAP_FACTOR = 5  # two samples further apart than 5 sample periods (100 ms) mark a gap in the trace
SAMPLE_PERIOD_S = 1.0 / FULL_RATE_HZ


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """A compact point of GPU history (4 Hz recent, 1 Hz long-term); `power_w` is the mean over its interval."""

    ts: float
    power_w: float | None
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    util_pct: float | None
    temp_c: float | None
    vram_used_mib: float | None

    @classmethod
    def of(cls, snapshot: GpuSnapshot, power_w: float | None = None) -> HistoryPoint:
        return cls(
            snapshot.ts,
            snapshot.power_w if power_w is None else power_w,
            snapshot.sm_clock_mhz,
            snapshot.mem_clock_mhz,
            snapshot.util_pct,
            snapshot.temp_c,
            snapshot.vram_used_mib,
        )


@dataclass(slots=True)
class _Aligned:
    """A counter reading matched to the sample integral at the same instant."""

    ts: float
    counter_j: float
    integral_j: float


@dataclass(slots=True)
class EnergyTrack:
    """The running sample integral of one GPU, and the energy counter readings aligned to it.

    A counter reading taken at time t is matched, once the samples pass t, with the trapezoid integral of the
    samples up to t. So the counter and the samples are compared over exactly the same window, whatever the
    cadence of either. A counter that goes backwards (driver reload) or a reopened source starts a new segment.
    """

    integral_j: float = 0.0
    last_ts: float | None = None
    last_watts: float | None = None
    last_counter_j: float | None = None
    pending: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))  # (ts, counter joules)
    first: _Aligned | None = None
    last: _Aligned | None = None
    closed_counter_j: float = 0.0
    closed_integral_j: float = 0.0
    aligned: int = 0  # readings matched with the samples so far
    readings: int = 0

    def add_samples(self, samples: Iterable[PowerSample]) -> None:
        for sample in samples:
            if self.last_ts is None or self.last_watts is None:
                self.last_ts, self.last_watts = sample.ts, sample.watts
                while self.pending and self.pending[0][0] < sample.ts:
                    self.pending.popleft()  # read before the first sample: nothing to compare it with
                continue
            if sample.ts <= self.last_ts:
                continue
            t0, w0, t1, w1 = self.last_ts, self.last_watts, sample.ts, sample.watts
            while self.pending and self.pending[0][0] <= t1:
                t, joules = self.pending.popleft()
                if t >= t0:
                    w_t = w0 + (w1 - w0) * (t - t0) / (t1 - t0)
                    self._align(t, joules, self.integral_j + (w0 + w_t) / 2 * (t - t0))
            self.integral_j += (w0 + w1) / 2 * (t1 - t0)
            self.last_ts, self.last_watts = t1, w1

    def add_counter(self, ts: float, joules: float) -> None:
        self.readings += 1
        self.last_counter_j = joules
        self.pending.append((ts, joules))

    def break_segment(self) -> None:
        """The source was reopened: what happened in between is bridged by the samples, not the counter."""
        self._close()
        self.pending.clear()

    def _align(self, ts: float, joules: float, integral: float) -> None:
        if self.last is not None and joules < self.last.counter_j:
            self._close()  # the counter went backwards: the driver was reloaded
        point = _Aligned(ts, joules, integral)
        self.aligned += 1
        if self.first is None:
            self.first = point
        self.last = point

    def _close(self) -> None:
        if self.first is not None and self.last is not None:
            self.closed_counter_j += self.last.counter_j - self.first.counter_j
            self.closed_integral_j += self.last.integral_j - self.first.integral_j
        self.first = self.last = None

    @property
    def counter_delta_j(self) -> float | None:
        """Counter joules over the aligned windows, or None before two readings were aligned."""
        if self.aligned < 2:
            return None
        first, last = self.first, self.last
        current = last.counter_j - first.counter_j if first is not None and last is not None else 0.0
        return self.closed_counter_j + current

    @property
    def aligned_integral_j(self) -> float:
        first, last = self.first, self.last
        current = last.integral_j - first.integral_j if first is not None and last is not None else 0.0
        return self.closed_integral_j + current


@dataclass(slots=True)
class GpuBuffers:
    static: GpuStatic
    power: deque[PowerSample]
    recent: deque[HistoryPoint]
    hourly: deque[HistoryPoint]
    energy: EnergyTrack = field(default_factory=EnergyTrack)
    latest: GpuSnapshot | None = None
    last_sample_ts: float = 0.0
    has_samples: bool = False
    samples_total: int = 0
    gaps: int = 0
    max_gap_s: float = 0.0
    dropped_duplicates: int = 0
    second_sum_w: float = 0.0  # power samples since the last 1 Hz point, for its mean
    second_count: int = 0


class TelemetrySampler:
    def __init__(
        self,
        source: TelemetrySource | None,
        *,
        poll_interval_s: float = 0.25,
        energy_interval_s: float = 1.0,
        history_minutes: float = 10.0,
        history_hours_1hz: float = 6.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.poll_interval_s = poll_interval_s
        self.energy_interval_s = max(MIN_ENERGY_INTERVAL_S, energy_interval_s)
        self.history_minutes = history_minutes
        self._full_rate_len = max(1, int(history_minutes * 60 * FULL_RATE_HZ))
        self._recent_len = max(1, int(history_minutes * 60 * RECENT_HZ))
        self._one_hz_len = max(1, int(history_hours_1hz * 3600))
        self._clock = clock
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._source_lock = threading.Lock()  # open/close vs. the energy thread; power polls never take it
        self._gpus: list[GpuBuffers] = []
        self._listeners: list[PowerListener] = []
        self._snapshot_listeners: list[SnapshotListener] = []
        self._reading_listeners: list[Callable[[int, GpuSnapshot], None]] = []
        self._gpus_listeners: list[GpusListener] = []
        self._poll_listeners: list[Callable[[TelemetrySampler], None]] = []
        self._stop = threading.Event()
        self._energy_due = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy_thread: threading.Thread | None = None
        self._last_energy_read = -math.inf
        self._last_samples_read = -math.inf
        self._last_reopen = 0.0
        self._next_1hz = 0.0
        self.started_at = clock()
        self.state = "none" if source is None else "starting"
        self.message = "no GPU telemetry source" if source is None else ""
        self.polls = 0
        self.energy_reads = 0
        self.recoveries = 0

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "none" if self.source is None else self.source.kind

    def start(self) -> None:
        if self.source is None:
            return
        self._open_source()
        self._thread = threading.Thread(target=self._run, name="claw-telemetry", daemon=True)
        self._energy_thread = threading.Thread(target=self._run_energy, name="claw-energy", daemon=True)
        self._thread.start()
        self._energy_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._energy_due.set()
        for thread in (self._thread, self._energy_thread):
            if thread is not None:
                thread.join(timeout=5)
        if self.source is not None:
            with self._source_lock:
                try:
                    self.source.close()
                except Exception:  # closing a dead driver must not block shutdown
                    log.debug("telemetry source close failed", exc_info=True)

    def add_power_listener(self, listener: PowerListener) -> None:
        self._listeners.append(listener)

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """Called about once a second with the latest snapshot of every GPU (the store persists these)."""
        self._snapshot_listeners.append(listener)

    def add_gpus_listener(self, listener: GpusListener) -> None:
        """Called with the GPUs each time the source opens (also after a recovery), and with [] when it fails."""
        self._gpus_listeners.append(listener)

    def add_reading_listener(self, listener: Callable[[int, GpuSnapshot], None]) -> None:
        """Called with each GPU's snapshot at every poll, just before that poll's power samples are handed on."""
        self._reading_listeners.append(listener)

    def add_poll_listener(self, listener: Callable[[TelemetrySampler], None]) -> None:
        """Called with the sampler after every poll and every state change, on the polling thread."""
        self._poll_listeners.append(listener)

    # ---- reading (thread-safe) ---------------------------------------------------------------------------------
    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def statics(self) -> list[GpuStatic]:
        with self._lock:
            return [gpu.static for gpu in self._gpus]

    def latest(self, index: int) -> GpuSnapshot | None:
        with self._lock:
            return self._gpus[index].latest if index < len(self._gpus) else None

    def latest_all(self) -> list[GpuSnapshot]:
        with self._lock:
            return [gpu.latest for gpu in self._gpus if gpu.latest is not None]

    def power_trace(self, index: int, since_ts: float = 0.0) -> list[PowerSample]:
        """Full-rate samples strictly newer than since_ts, oldest first (cost grows with the window, not the ring)."""
        with self._lock:
            if index >= len(self._gpus):
                return []
            out = []
            for sample in reversed(self._gpus[index].power):
                if sample.ts <= since_ts:
                    break
                out.append(sample)
        out.reverse()
        return out

    def power_columns(self, index: int, t0: float, t1: float, columns: int) -> list[tuple[int, float, float]]:
        """The samples in (t0, t1] cut into `columns` equal slices: (slice, mean W, peak W) for each slice that
        holds samples. One pass over the window without copying it (the charts call this twice a second)."""
        sums = [0.0] * columns
        counts = [0] * columns
        peaks = [-math.inf] * columns
        scale = columns / (t1 - t0) if t1 > t0 else 0.0
        last = columns - 1
        with self._lock:
            if index >= len(self._gpus):
                return []
            for sample in reversed(self._gpus[index].power):
                ts = sample.ts
                if ts <= t0:
                    break
                if ts > t1:
                    continue
                column = min(last, int((ts - t0) * scale))
                watts = sample.watts
                sums[column] += watts
                counts[column] += 1
                if watts > peaks[column]:
                    peaks[column] = watts
        return [(c, sums[c] / counts[c], peaks[c]) for c in range(columns) if counts[c]]

    def mean_power_w(self, index: int, window_s: float) -> float | None:
        """Mean of the samples of the last `window_s` seconds (a time average: samples are evenly spaced)."""
        trace = self.power_trace(index, self._clock() - window_s)
        return sum(s.watts for s in trace) / len(trace) if trace else None

    def recent_history(self, index: int, since_ts: float = 0.0) -> list[HistoryPoint]:
        """Up to 4 Hz history points (clocks, util, temperature) newer than since_ts, for `history_minutes`."""
        return self._points(index, "recent", since_ts)

    def history_1hz(self, index: int, since_ts: float = 0.0) -> list[HistoryPoint]:
        """One point a second for `history_hours_1hz`; `power_w` is the mean of that second's samples."""
        return self._points(index, "hourly", since_ts)

    def _points(self, index: int, ring: str, since_ts: float) -> list[HistoryPoint]:
        with self._lock:
            if index >= len(self._gpus):
                return []
            out = []
            for point in reversed(getattr(self._gpus[index], ring)):
                if point.ts <= since_ts:
                    break
                out.append(point)
        out.reverse()
        return out

    @property
    def samples_interval_s(self) -> float:
        """Seconds between reads of the power sample buffers: every poll for up to 2 GPUs, then stretched (each read
        costs ~0.3 ms on NVML), never past 1 s: the driver keeps 2.4 s of samples, so none is lost."""
        return min(1.0, max(self.poll_interval_s, len(self._gpus) * SAMPLES_READ_S_PER_GPU))

    @property
    def counter_interval_s(self) -> float:
        """Seconds between counter reads: the configured interval, stretched on boxes with many GPUs so that the
        reads (~3 ms of CPU each on NVML) stay within a fixed budget. Accuracy does not suffer: each reading is
        aligned with the samples whenever it is taken."""
        return max(self.energy_interval_s, max(1, len(self._gpus)) / COUNTER_READS_PER_S)

    def buffer_lengths(self, index: int) -> dict[str, int]:
        with self._lock:
            gpu = self._gpus[index]
            return {"power": len(gpu.power), "recent": len(gpu.recent), "hourly": len(gpu.hourly)}

    def buffer_capacity(self) -> dict[str, int]:
        return {"power": self._full_rate_len, "recent": self._recent_len, "hourly": self._one_hz_len}

    def counter_delta_j(self, index: int) -> float | None:
        """Energy counter joules over the windows where counter readings are aligned with the samples, or None."""
        with self._lock:
            return self._gpus[index].energy.counter_delta_j if index < len(self._gpus) else None

    def integral_j(self, index: int) -> float:
        """Trapezoid integral of every power sample this sampler received (what the ledger adds up too)."""
        with self._lock:
            return self._gpus[index].energy.integral_j if index < len(self._gpus) else 0.0

    def counter_energy_j(self, index: int) -> float | None:
        """The counter's measure of the whole sampled window: the aligned counter delta, with the < 1 s edges
        before the first and after the last aligned reading (and any reopen gap) bridged by the samples."""
        with self._lock:
            if index >= len(self._gpus):
                return None
            track = self._gpus[index].energy
            delta = track.counter_delta_j
            if delta is None:
                return None
            return delta + (track.integral_j - track.aligned_integral_j)

    def energy_check(self, index: int) -> dict[str, Any]:
        """Counter vs sample integral over the same window, for display and the session summary."""
        with self._lock:
            track = self._gpus[index].energy if index < len(self._gpus) else None
            if track is None or track.counter_delta_j is None:
                return {"counter_j": None, "integral_j": None, "error_pct": None, "readings": 0}
            counter, integral = track.counter_delta_j, track.aligned_integral_j
            return {
                "counter_j": counter,
                "integral_j": integral,
                "error_pct": (integral - counter) / counter * 100 if counter > 0 else None,
                "readings": track.readings,
            }

    def trace_stats(self, index: int) -> dict[str, Any]:
        """How complete the power trace is: samples, gaps (> 100 ms between samples), the measured rate."""
        with self._lock:
            if index >= len(self._gpus):
                return {}
            gpu = self._gpus[index]
            tail = list(itertools.islice(reversed(gpu.power), 101))
        dts = [a.ts - b.ts for a, b in itertools.pairwise(tail) if a.ts > b.ts]
        median_dt = statistics.median(dts) if dts else None
        return {
            "samples": gpu.samples_total,
            "gaps": gpu.gaps,
            "max_gap_s": round(gpu.max_gap_s, 3),
            "dropped_duplicates": gpu.dropped_duplicates,
            "median_dt_s": median_dt,
            "rate_hz": round(1.0 / median_dt, 1) if median_dt else None,
        }

    def power_stddev_w(self, index: int, window_s: float = 60.0) -> float | None:
        """Standard deviation of the power samples of the last `window_s` seconds (one float pass, no copy)."""
        since = self._clock() - window_s
        n = 0
        shift = total = total_sq = 0.0
        with self._lock:
            if index >= len(self._gpus):
                return None
            for sample in reversed(self._gpus[index].power):
                if sample.ts <= since:
                    break
                if n == 0:
                    shift = sample.watts  # shifted sums keep the float arithmetic stable
                d = sample.watts - shift
                total += d
                total_sq += d * d
                n += 1
        if n < 2:
            return None
        return math.sqrt(max(0.0, (total_sq - total * total / n) / (n - 1)))

    # ---- polling -------------------------------------------------------------------------------------------------
    def poll_now(self) -> None:
        """Poll power samples and snapshots once, now (also called by readers who need the freshest samples)."""
        self._poll(samples=True)

    def _poll(self, *, samples: bool) -> None:
        source = self.source
        if source is None or self.state == "error":
            return
        with self._poll_lock:
            self._guarded(lambda: self._poll_once(source, samples))

    def read_energy(self) -> None:
        """Read every GPU's energy counter now (blocking: ~3 ms a GPU on NVML)."""
        source = self.source
        if source is None or self.state != "ok":
            return
        with self._source_lock:
            self._guarded(lambda: self._read_energy_once(source))

    def tick(self) -> None:
        """One sampler step on the calling thread: poll, read the energy counter when due, keep a 1 Hz point."""
        self._step(energy_inline=True)

    def _step(self, *, energy_inline: bool) -> None:
        if self.source is None:
            return
        if self.state == "error":
            self._maybe_reopen(self.source)
            if self.state == "error":
                return
        now = self._clock()
        self._poll(samples=now - self._last_samples_read >= self._due_after(self.samples_interval_s))
        if self.state == "ok" and now - self._last_energy_read >= self._due_after(self.counter_interval_s):
            self._last_energy_read = now
            if energy_inline:
                self.read_energy()
            else:
                self._energy_due.set()
        with self._lock:
            due = now >= self._next_1hz
            if due:
                self._next_1hz = now + 1.0
        if due:
            self._record_1hz()
        self._notify_poll()

    def _due_after(self, interval_s: float) -> float:
        """Half a poll of slack: a read is due at the poll nearest its interval, not at the one after it."""
        return interval_s - min(self.poll_interval_s, interval_s) / 2

    def _run(self) -> None:
        # Self-pacing: the next poll is due one interval after the last was due, skipping missed slots.
        next_due = time.monotonic() + self.poll_interval_s
        while not self._stop.wait(max(0.0, next_due - time.monotonic())):
            next_due += self.poll_interval_s
            late = time.monotonic() - next_due
            if late > 0:
                next_due += math.ceil(late / self.poll_interval_s) * self.poll_interval_s
            self._step(energy_inline=False)

    def _run_energy(self) -> None:
        while True:
            self._energy_due.wait()
            if self._stop.is_set():
                return
            self._energy_due.clear()
            self.read_energy()

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except TelemetryError as exc:
            self._set_error(str(exc))
        except Exception as exc:  # a driver can raise anything; never let it kill the sampler
            log.exception("telemetry read failed")
            self._set_error(f"telemetry read failed: {exc}")

    def _open_source(self) -> None:
        assert self.source is not None
        with self._source_lock:
            try:
                statics = self.source.open()
            except TelemetryError as exc:
                self._set_error(str(exc))
                return
            except Exception as exc:
                self._set_error(f"telemetry source failed to open: {exc}")
                return
        now = self._clock()
        with self._lock:
            if [s.index for s in statics] != [gpu.static.index for gpu in self._gpus]:
                self._gpus = [self._new_buffers(static) for static in statics]
            for gpu, static in zip(self._gpus, statics):
                gpu.static = static
                gpu.last_sample_ts = max(gpu.last_sample_ts, now)
                gpu.energy.break_segment()
        self.state = "ok"
        self.message = ""
        self._notify_gpus(statics)
        self.poll_now()
        self._last_energy_read = self._clock()
        self.read_energy()

    def _new_buffers(self, static: GpuStatic) -> GpuBuffers:
        return GpuBuffers(
            static, deque(maxlen=self._full_rate_len), deque(maxlen=self._recent_len), deque(maxlen=self._one_hz_len)
        )

    def _maybe_reopen(self, source: TelemetrySource) -> None:
        now = self._clock()
        if now - self._last_reopen < REOPEN_INTERVAL_S:
            return
        self._last_reopen = now
        with self._source_lock:
            try:
                source.close()
            except Exception:
                log.debug("closing the failed telemetry source failed", exc_info=True)
        self._open_source()
        if self.state == "ok":
            self.recoveries += 1
            log.warning("telemetry recovered: %d GPU(s)", self.gpu_count)

    def _set_error(self, message: str) -> None:
        was_error = self.state == "error"
        self.state = "error"
        self.message = message
        self._last_reopen = self._clock()
        if not was_error:
            log.warning("telemetry unavailable: %s", message)
            self._notify_gpus([])
            self._notify_poll()

    def _poll_once(self, source: TelemetrySource, read_samples: bool = True) -> None:
        if read_samples:
            self._last_samples_read = self._clock()
        for index, gpu in enumerate(self._gpus):
            samples = self._fresh(gpu, source.power_samples(index, gpu.last_sample_ts)) if read_samples else []
            snapshot = source.snapshot(index)
            self._store(gpu, samples, snapshot)
            for reading_listener in self._reading_listeners:
                reading_listener(index, snapshot)
            if samples:
                for listener in self._listeners:
                    listener(index, samples)
        self.polls += 1

    def _read_energy_once(self, source: TelemetrySource) -> None:
        for index, gpu in enumerate(list(self._gpus)):
            before = self._clock()
            joules = source.energy_counter_j(index)
            if joules is None:
                continue
            # The call takes ~3 ms on NVML: its middle is the best guess of when the counter was read.
            ts = (before + self._clock()) / 2
            with self._lock:
                gpu.energy.add_counter(ts, joules)
        self.energy_reads += 1

    def _fresh(self, gpu: GpuBuffers, samples: list[PowerSample]) -> list[PowerSample]:
        """Drop anything not newer than what was already stored: the trace has no duplicates."""
        fresh = [s for s in samples if s.ts > gpu.last_sample_ts]
        if len(fresh) != len(samples):
            fresh.sort(key=lambda s: s.ts)
            gpu.dropped_duplicates += len(samples) - len(fresh)
        return fresh

    def _store(self, gpu: GpuBuffers, samples: list[PowerSample], snapshot: GpuSnapshot) -> None:
        with self._lock:
            if samples:
                if gpu.has_samples:
                    dt = samples[0].ts - gpu.last_sample_ts
                    self._note_gap(gpu, dt)
                for a, b in itertools.pairwise(samples):
                    self._note_gap(gpu, b.ts - a.ts)
                gpu.power.extend(samples)
                gpu.energy.add_samples(samples)
                gpu.last_sample_ts = samples[-1].ts
                gpu.has_samples = True
                gpu.samples_total += len(samples)
                gpu.second_sum_w += sum(s.watts for s in samples)
                gpu.second_count += len(samples)
            if snapshot.energy_j is None and gpu.energy.last_counter_j is not None:
                snapshot.energy_j = gpu.energy.last_counter_j
            gpu.latest = snapshot
            if not gpu.recent or snapshot.ts - gpu.recent[-1].ts >= 1.0 / RECENT_HZ - 1e-3:
                gpu.recent.append(HistoryPoint.of(snapshot))

    @staticmethod
    def _note_gap(gpu: GpuBuffers, dt: float) -> None:
        if dt > GAP_FACTOR * SAMPLE_PERIOD_S:
            gpu.gaps += 1
            gpu.max_gap_s = max(gpu.max_gap_s, dt)

    def _record_1hz(self) -> None:
        with self._lock:
            latest = [gpu.latest for gpu in self._gpus if gpu.latest is not None]
            for gpu in self._gpus:
                if gpu.latest is None:
                    continue
                mean = gpu.second_sum_w / gpu.second_count if gpu.second_count else None
                gpu.hourly.append(HistoryPoint.of(gpu.latest, mean))
                gpu.second_sum_w, gpu.second_count = 0.0, 0
        if latest:
            for listener in self._snapshot_listeners:
                try:
                    listener(latest)
                except Exception:
                    log.exception("telemetry snapshot listener failed")

    def _notify_gpus(self, statics: list[GpuStatic]) -> None:
        for listener in self._gpus_listeners:
            try:
                listener(list(statics))
            except Exception:
                log.exception("telemetry GPU listener failed")

    def _notify_poll(self) -> None:
        for listener in self._poll_listeners:
            try:
                listener(self)
            except Exception:
                log.exception("telemetry poll listener failed")
