"""The telemetry sampler: one thread that polls a TelemetrySource into bounded ring buffers.

Power samples are read every `poll_interval_s` (NVML keeps ~2.4 s of 20 ms samples, so ≤ 1 s loses none), the
slow energy counter at most every `energy_interval_s`, and a snapshot of every GPU on each poll. Listeners get each
new batch of power samples in order (the ledger attributes energy from them). When the source fails the sampler
keeps running, reports the error, and reopens the source until it comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from claw_tui.telemetry.types import (
    GpuSnapshot,
    GpuStatic,
    PowerSample,
    TelemetryError,
    TelemetrySource,
)

log = logging.getLogger(__name__)

PowerListener = Callable[[int, list[PowerSample]], None]

FULL_RATE_HZ = 50
REOPEN_INTERVAL_S = 5.0


@dataclass(slots=True)
class GpuBuffers:
    static: GpuStatic
    power: deque[PowerSample]
    snapshots_1hz: deque[GpuSnapshot]
    latest: GpuSnapshot | None = None
    last_sample_ts: float = 0.0
    counter_start_j: float | None = None
    counter_last_j: float | None = None


class TelemetrySampler:
    def __init__(
        self,
        source: TelemetrySource | None,
        *,
        poll_interval_s: float = 0.25,
        energy_interval_s: float = 0.5,
        history_minutes: float = 10.0,
        history_hours_1hz: float = 6.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.poll_interval_s = poll_interval_s
        self.energy_interval_s = energy_interval_s
        self._full_rate_len = int(history_minutes * 60 * FULL_RATE_HZ)
        self._one_hz_len = int(history_hours_1hz * 3600)
        self._clock = clock
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._gpus: list[GpuBuffers] = []
        self._listeners: list[PowerListener] = []
        self._snapshot_listeners: list[Callable[[list[GpuSnapshot]], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_energy_read = 0.0
        self._last_reopen = 0.0
        self._next_1hz = 0.0
        self.started_at = clock()
        self.state = "none" if source is None else "starting"
        self.message = "no GPU telemetry source" if source is None else ""
        self.polls = 0

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "none" if self.source is None else self.source.kind

    def start(self) -> None:
        if self.source is None:
            return
        self._open_source()
        self._thread = threading.Thread(target=self._run, name="claw-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.source is not None:
            try:
                self.source.close()
            except Exception:  # closing a dead driver must not block shutdown
                log.debug("telemetry source close failed", exc_info=True)

    def add_power_listener(self, listener: PowerListener) -> None:
        self._listeners.append(listener)

    def add_snapshot_listener(self, listener: Callable[[list[GpuSnapshot]], None]) -> None:
        """Called about once a second with the latest snapshot of every GPU (the store persists these)."""
        self._snapshot_listeners.append(listener)

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
        with self._lock:
            if index >= len(self._gpus):
                return []
            power = self._gpus[index].power
            if not power or power[0].ts > since_ts:
                return list(power)
            return [s for s in power if s.ts > since_ts]

    def history_1hz(self, index: int) -> list[GpuSnapshot]:
        with self._lock:
            return list(self._gpus[index].snapshots_1hz) if index < len(self._gpus) else []

    def counter_delta_j(self, index: int) -> float | None:
        """Energy counter delta since the sampler started (the ground truth for totals), or None."""
        with self._lock:
            gpu = self._gpus[index] if index < len(self._gpus) else None
            if gpu is None or gpu.counter_start_j is None or gpu.counter_last_j is None:
                return None
            return gpu.counter_last_j - gpu.counter_start_j

    def power_stddev_w(self, index: int, window_s: float = 60.0) -> float | None:
        trace = self.power_trace(index, self._clock() - window_s)
        if len(trace) < 2:
            return None
        mean = sum(s.watts for s in trace) / len(trace)
        return (sum((s.watts - mean) ** 2 for s in trace) / (len(trace) - 1)) ** 0.5

    # ---- polling -------------------------------------------------------------------------------------------------
    def poll_now(self) -> None:
        """Poll the source once, now (also called by readers who need the freshest samples)."""
        if self.source is None or self.state == "error":
            return
        with self._poll_lock:
            try:
                self._poll_once()
            except TelemetryError as exc:
                self._set_error(str(exc))
            except Exception as exc:  # a driver can raise anything; never let it kill the sampler
                log.exception("telemetry poll failed")
                self._set_error(f"telemetry read failed: {exc}")

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            if self.state == "error":
                self._maybe_reopen()
                continue
            self.tick()

    def tick(self) -> None:
        """One sampler step: poll, and keep a 1 Hz snapshot when a second has passed."""
        self.poll_now()
        with self._lock:
            now = self._clock()
            due = now >= self._next_1hz
            if due:
                self._next_1hz = now + 1.0
        if due:
            self._record_1hz()

    def _open_source(self) -> None:
        assert self.source is not None
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
            if len(self._gpus) != len(statics):
                self._gpus = [
                    GpuBuffers(static, deque(maxlen=self._full_rate_len), deque(maxlen=self._one_hz_len))
                    for static in statics
                ]
            for gpu in self._gpus:
                gpu.last_sample_ts = max(gpu.last_sample_ts, now)
        self.state = "ok"
        self.message = ""
        self.poll_now()

    def _maybe_reopen(self) -> None:
        now = self._clock()
        if now - self._last_reopen < REOPEN_INTERVAL_S:
            return
        self._last_reopen = now
        try:
            self.source.close()
        except Exception:
            pass
        self._open_source()
        if self.state == "ok":
            log.warning("telemetry recovered")

    def _set_error(self, message: str) -> None:
        if self.state != "error":
            log.warning("telemetry unavailable: %s", message)
        self.state = "error"
        self.message = message
        self._last_reopen = self._clock()

    def _poll_once(self) -> None:
        source = self.source
        now = self._clock()
        read_energy = now - self._last_energy_read >= self.energy_interval_s
        if read_energy:
            self._last_energy_read = now
        for index, gpu in enumerate(self._gpus):
            samples = source.power_samples(index, gpu.last_sample_ts)
            snapshot = source.snapshot(index)
            counter = source.energy_counter_j(index) if read_energy else None
            self._store(gpu, samples, snapshot, counter)
            if samples:
                for listener in self._listeners:
                    listener(index, samples)
        self.polls += 1

    def _store(self, gpu: GpuBuffers, samples: list[PowerSample], snapshot: GpuSnapshot, counter: float | None):
        with self._lock:
            if samples:
                gpu.power.extend(samples)
                gpu.last_sample_ts = samples[-1].ts
            if counter is not None:
                if gpu.counter_start_j is None:
                    gpu.counter_start_j = counter
                gpu.counter_last_j = counter
            if snapshot.energy_j is None and gpu.counter_last_j is not None:
                snapshot.energy_j = gpu.counter_last_j
            gpu.latest = snapshot

    def _record_1hz(self) -> None:
        with self._lock:
            latest = [gpu.latest for gpu in self._gpus if gpu.latest is not None]
            for gpu in self._gpus:
                if gpu.latest is not None:
                    gpu.snapshots_1hz.append(gpu.latest)
        if latest:
            for listener in self._snapshot_listeners:
                try:
                    listener(latest)
                except Exception:
                    log.exception("telemetry snapshot listener failed")
