"""The JSON a console loads its state from, built the same way for the in-process source and the HTTP API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from claw_tui.telemetry.sampler import HistoryPoint, TelemetrySampler
from claw_tui.telemetry.types import GpuSnapshot

FULL_RATE_DEFAULT_S = 120.0


def point_json(point: HistoryPoint) -> list[float | None]:
    return [
        round(point.ts, 3),
        _round(point.power_w, 2),
        point.sm_clock_mhz,
        point.mem_clock_mhz,
        point.util_pct,
        point.temp_c,
        point.vram_used_mib,
    ]


def snapshot_json(snapshot: GpuSnapshot | None) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    return snapshot.console_json()


def gpu_stats_json(sampler: TelemetrySampler, index: int) -> dict[str, Any]:
    return {
        "index": index,
        "trace": sampler.trace_stats(index),
        "energy_check": sampler.energy_check(index),
        "stddev_60s_w": _round(sampler.power_stddev_w(index), 3),
    }


def source_json(sampler: TelemetrySampler | None) -> dict[str, Any]:
    if sampler is None:
        return {"source": "none", "state": "none", "message": "no telemetry source", "started_at": None}
    return {
        "source": sampler.kind,
        "state": sampler.state,
        "message": sampler.message,
        "started_at": sampler.started_at,
        "history_minutes": sampler.history_minutes,
    }


def telemetry_json(
    sampler: TelemetrySampler | None, now: float, seconds: float, gpu: int | None = None
) -> dict[str, Any]:
    """`GET /claw/v1/telemetry`: per GPU its facts, latest state, the 20 ms power samples of the last `seconds`
    (as far as the full-rate ring reaches), and the 4 Hz and 1 Hz history points of the same window."""
    out = {**source_json(sampler), "now": now, "seconds": seconds, "gpus": []}
    if sampler is None or not sampler.gpu_count:
        return out
    since = now - seconds
    statics = sampler.statics()
    indexes = range(len(statics)) if gpu is None else [gpu]
    for index in indexes:
        if index >= len(statics):
            continue
        out["gpus"].append(
            {
                "index": index,
                "static": asdict(statics[index]),
                "latest": snapshot_json(sampler.latest(index)),
                "power": [[round(s.ts, 3), round(s.watts, 2)] for s in sampler.power_trace(index, since)],
                "recent": [point_json(p) for p in sampler.recent_history(index, since)],
                "hourly": [point_json(p) for p in sampler.history_1hz(index, since)],
                "stats": gpu_stats_json(sampler, index),
            }
        )
    return out


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
