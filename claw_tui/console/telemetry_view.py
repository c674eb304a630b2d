"""The GPU telemetry a console shows, rebuilt from events: the same reading methods as the service's sampler
(power trace, 4 Hz and 1 Hz history, latest state, statics, trace quality), on data it owns."""

from __future__ import annotations

from collections import deque
from collections.abc import Reversible
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from claw_tui.telemetry.sampler import FULL_RATE_HZ, RECENT_HZ
from claw_tui.telemetry.sampler import HistoryPoint as HistoryPoint  # the panes' type of a history point
from claw_tui.telemetry.types import GpuProcess, GpuSnapshot, GpuStatic, PowerSample

HOURLY_LEN = 6 * 3600


class _Timed(Protocol):
    @property
    def ts(self) -> float: ...


TimedT = TypeVar("TimedT", bound=_Timed)


def static_from_json(data: dict[str, Any]) -> GpuStatic:
    known = {k: v for k, v in data.items() if k in GpuStatic.__dataclass_fields__}
    known["supported_sm_clocks_mhz"] = tuple(known.get("supported_sm_clocks_mhz") or ())
    return GpuStatic(**known)


def snapshot_from_json(data: dict[str, Any]) -> GpuSnapshot:
    known = {k: v for k, v in data.items() if k in GpuSnapshot.__dataclass_fields__ and k != "processes"}
    known["clock_event_reasons"] = list(known.get("clock_event_reasons") or [])
    processes = [
        GpuProcess(**{k: v for k, v in p.items() if k in GpuProcess.__dataclass_fields__})
        for p in data.get("processes") or []
        if isinstance(p, dict)
    ]
    return GpuSnapshot(**known, processes=processes)


def point_from_json(row: list[Any]) -> HistoryPoint:
    return HistoryPoint(*row[:7])


@dataclass
class GpuTrace:
    static: GpuStatic
    power: deque[PowerSample]
    recent: deque[HistoryPoint]
    hourly: deque[HistoryPoint]
    latest: GpuSnapshot | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    second_sum_w: float = 0.0
    second_count: int = 0


class TelemetryView:
    def __init__(self) -> None:
        self.kind = "none"
        self.state = "none"
        self.message = ""
        self.started_at = 0.0
        self.history_minutes = 10.0
        self._gpus: list[GpuTrace] = []

    # ---- loading and events --------------------------------------------------------------------------------------
    def load(self, data: dict[str, Any]) -> None:
        """A whole `GET /claw/v1/telemetry` answer."""
        self._source(data)
        self._gpus = []
        for gpu in data.get("gpus") or []:
            trace = self._new_trace(static_from_json(gpu.get("static") or {"index": gpu.get("index", 0), "name": ""}))
            trace.power.extend(PowerSample(ts, w) for ts, w in gpu.get("power") or [])
            trace.recent.extend(point_from_json(p) for p in gpu.get("recent") or [])
            trace.hourly.extend(point_from_json(p) for p in gpu.get("hourly") or [])
            if gpu.get("latest"):
                trace.latest = snapshot_from_json(gpu["latest"])
            trace.stats = gpu.get("stats") or {}
            self._gpus.append(trace)

    def _source(self, data: dict[str, Any]) -> None:
        self.kind = data.get("source") or "none"
        self.state = data.get("state") or "none"
        self.message = data.get("message") or ""
        if data.get("started_at") is not None:
            self.started_at = data["started_at"]
        if data.get("history_minutes"):
            self.history_minutes = float(data["history_minutes"])

    def _new_trace(self, static: GpuStatic) -> GpuTrace:
        return GpuTrace(
            static=static,
            power=deque(maxlen=max(1, int(self.history_minutes * 60 * FULL_RATE_HZ))),
            recent=deque(maxlen=max(1, int(self.history_minutes * 60 * RECENT_HZ))),
            hourly=deque(maxlen=HOURLY_LEN),
        )

    def set_gpus(self, data: dict[str, Any]) -> None:
        """The source opened again (or failed): keep what is known of GPUs that are still there."""
        self._source(data)
        statics = [static_from_json(s) for s in data.get("gpus") or []]
        kept = []
        for static in statics:
            old = self._gpus[static.index] if static.index < len(self._gpus) else None
            if old is not None and old.static.uuid == static.uuid:
                old.static = static
                kept.append(old)
            else:
                kept.append(self._new_trace(static))
        self._gpus = kept

    def add(self, data: dict[str, Any]) -> None:
        """A `telemetry` event: new samples and the latest snapshot of each GPU."""
        for gpu in data.get("gpus") or []:
            index = gpu.get("index", 0)
            if index >= len(self._gpus):
                continue
            trace = self._gpus[index]
            last = trace.power[-1].ts if trace.power else -1.0
            for ts, watts in gpu.get("samples") or []:
                if ts > last:
                    trace.power.append(PowerSample(ts, watts))
                    trace.second_sum_w += watts
                    trace.second_count += 1
                    last = ts
            snapshot = gpu.get("snapshot")
            if snapshot:
                self._add_snapshot(trace, snapshot_from_json(snapshot))
        if self._gpus and self.state != "ok":
            self.state = "ok"

    def _add_snapshot(self, trace: GpuTrace, snapshot: GpuSnapshot) -> None:
        trace.latest = snapshot
        if not trace.recent or snapshot.ts - trace.recent[-1].ts >= 1.0 / RECENT_HZ - 1e-3:
            trace.recent.append(HistoryPoint.of(snapshot))
        if not trace.hourly or snapshot.ts - trace.hourly[-1].ts >= 1.0:
            mean = trace.second_sum_w / trace.second_count if trace.second_count else None
            trace.hourly.append(HistoryPoint.of(snapshot, mean))
            trace.second_sum_w, trace.second_count = 0.0, 0

    def set_stats(self, data: dict[str, Any]) -> None:
        """A `telemetry.stats` event."""
        self._source(data)
        for stats in data.get("gpus") or []:
            index = stats.get("index", 0)
            if index < len(self._gpus):
                self._gpus[index].stats = stats

    # ---- reading: the sampler's methods ----------------------------------------------------------------------------
    @property
    def gpu_count(self) -> int:
        return len(self._gpus)

    def statics(self) -> list[GpuStatic]:
        return [gpu.static for gpu in self._gpus]

    def latest(self, index: int) -> GpuSnapshot | None:
        return self._gpus[index].latest if index < len(self._gpus) else None

    def latest_all(self) -> list[GpuSnapshot]:
        return [gpu.latest for gpu in self._gpus if gpu.latest is not None]

    def power_trace(self, index: int, since_ts: float = 0.0) -> list[PowerSample]:
        return self._tail(self._gpus[index].power if index < len(self._gpus) else (), since_ts)

    def recent_history(self, index: int, since_ts: float = 0.0) -> list[HistoryPoint]:
        return self._tail(self._gpus[index].recent if index < len(self._gpus) else (), since_ts)

    def history_1hz(self, index: int, since_ts: float = 0.0) -> list[HistoryPoint]:
        return self._tail(self._gpus[index].hourly if index < len(self._gpus) else (), since_ts)

    @staticmethod
    def _tail(ring: Reversible[TimedT], since_ts: float) -> list[TimedT]:
        out = []
        for item in reversed(ring):
            if item.ts <= since_ts:
                break
            out.append(item)
        out.reverse()
        return out

    def trace_stats(self, index: int) -> dict[str, Any]:
        stats: dict[str, Any] | None = self._stat(index, "trace")
        return stats or {}

    def energy_check(self, index: int) -> dict[str, Any]:
        check: dict[str, Any] | None = self._stat(index, "energy_check")
        return check or {"error_pct": None}

    def power_stddev_w(self, index: int, window_s: float = 60.0) -> float | None:
        stddev: float | None = self._stat(index, "stddev_60s_w")
        return stddev

    def _stat(self, index: int, key: str) -> Any:
        """One of the sampler's statistics of a GPU, as the service's telemetry JSON carries it."""
        return self._gpus[index].stats.get(key) if index < len(self._gpus) else None
