"""The efficiency summary (export schema `claw.summary/1`) built from request records and energy totals.

One builder serves the live session (`/claw/v1/summary`, F7), past sessions from the store (`claw export`) and
bench runs (`claw bench`), so `claw compare` can put any two side by side. It returns a `Summary` (its shapes are in
`claw_tui.summary_types`); `Summary.to_json()` is the schema's JSON document, made where the summary leaves claw.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from claw_tui.parking import canonical_model
from claw_tui.quantiles import percentile
from claw_tui.records import FinishedRequest, RequestRecord
from claw_tui.summary_types import SCHEMA as SCHEMA
from claw_tui.summary_types import AgentRow, Efficiency, Energy, Governor, GroupMetrics, ModelRow, Summary
from claw_tui.tally import GroupStats, SavedTally, SessionTally, ratio

if TYPE_CHECKING:
    from claw_tui.store import StoredSession
    from claw_tui.telemetry.types import GpuSnapshot


def percentiles(values: Sequence[float]) -> dict[str, Any]:
    return {f"p{p}": _round(percentile(values, p)) for p in (50, 95, 99)}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def group_metrics(records: Iterable[FinishedRequest]) -> GroupMetrics:
    """The per-group metrics (the whole session, a by_model or by_agent row) of a list of records."""
    stats = GroupStats()
    for record in records:
        if record.status != "active":
            stats.add(record)
    return stats.metrics()


EMPTY_MODEL_COSTS: dict[str, Any] = {
    "load_count": 0,
    "load_j": 0.0,
    "parking_s": 0.0,
    "parking_j": None,
    "unload_after": [],
}


def by_model(tally: SessionTally | SavedTally, models: dict[str, dict[str, Any]]) -> tuple[ModelRow, ...]:
    """Request metrics per model, with each model's loads, parking cost and unload-after-N-minutes savings."""
    rows = {canonical_model(name): (name, metrics) for name, metrics in tally.groups_metrics("model").items()}
    for name in models:
        if name not in rows:
            rows[name] = (name, GroupStats().metrics())
    kept = tally.model_rows
    out = []
    for key, (name, metrics) in sorted(rows.items()):
        costs = models.get(key)
        last = kept.get(name)
        if last is None or last[0] is not metrics or last[1] != costs:  # the group or its costs moved: a new row
            last = kept[name] = (metrics, costs, ModelRow.of(name, metrics, {**EMPTY_MODEL_COSTS, **(costs or {})}))
        out.append(last[2])
    return tuple(out)


def by_agent(tally: SessionTally | SavedTally) -> tuple[AgentRow, ...]:
    return tuple(AgentRow(name, metrics) for name, metrics in tally.groups_metrics("agent").items())


def summarize(
    *,
    session: dict[str, Any],
    gpus: list[dict[str, Any]],
    records: Iterable[RequestRecord] = (),
    energy: dict[str, Any],
    counter_j: float | None,
    power_stddev_w: float | None,
    governor: dict[str, Any] | None,
    alerts: dict[str, Any],
    bench: dict[str, Any] | None = None,
    model_events: Iterable[RequestRecord] = (),
    models: dict[str, dict[str, Any]] | None = None,
    idle_baseline_w: float | None = None,
    tally: SessionTally | SavedTally | None = None,
) -> Summary:
    """`energy` holds the ledger totals (total_j and its buckets active_j = requests, load_j, unmetered_j, idle_j,
    pending_j, with the seconds each covered); `models` the ledger's per-model loads and parking. The request
    statistics come from `tally` (the live session's, kept as records finish) or else from `records` and
    `model_events` (a stored session, a bench run).

    `integral_j` is the integral of the 20 ms power samples (what requests and idle are shares of); `counter_j` is
    the GPU's energy counter over the same session, the ground truth: their difference checks the sampling.
    """
    if tally is None:
        tally = SessionTally.of(itertools.chain(records, model_events))
    whole = tally.whole_metrics()
    duration_s = session.get("duration_s") or 0.0
    total_j = energy["total_j"]
    models = models or {}
    parking = [m.get("parking_j") for m in models.values()]
    parked_j = [j for j in parking if j is not None]
    measured_s = sum(energy.get(k) or 0.0 for k in ("idle_s", "active_s", "load_s", "unmetered_s"))
    completion = whole.tokens.completion
    governed = Governor.from_json(governor or {})
    if governed.wake_latency_ms_p95 is None:
        governed = replace(governed, wake_latency_ms_p95=_round(tally.wake_p95()))
    return Summary(
        session=session,
        gpus=gpus,
        energy=Energy(
            total_j=_round(total_j),
            active_j=_round(energy["active_j"]),
            requests_j=_round(energy["active_j"]),
            load_j=_round(energy.get("load_j", 0.0)),
            unmetered_j=_round(energy.get("unmetered_j", 0.0)),
            idle_j=_round(energy["idle_j"]),
            pending_j=_round(energy.get("pending_j", 0.0)),
            parking_j=_round(sum(parked_j)) if len(parked_j) == len(parking) else None,
            idle_baseline_w=_round(idle_baseline_w),
            idle_s=_round(energy.get("idle_s")),
            active_s=_round(energy.get("active_s")),
            load_s=_round(energy.get("load_s", 0.0)),
            unmetered_s=_round(energy.get("unmetered_s", 0.0)),
            counter_j=_round(counter_j),
            integral_j=_round(total_j),
            counter_minus_integral_j=_round(counter_j - total_j) if counter_j is not None else None,
            counter_vs_integral_pct=_round(100 * (total_j - counter_j) / counter_j) if counter_j else None,
            avg_power_w=_round(ratio(total_j - energy.get("pending_j", 0.0), measured_s)),
            idle_power_w=_round(ratio(energy["idle_j"], energy.get("idle_s"))),
            active_power_w=_round(ratio(energy["active_j"], energy.get("active_s"))),
            power_stddev_w=_round(power_stddev_w),
        ),
        tokens=whole.tokens,
        efficiency=Efficiency(
            tokens_per_joule=_round(ratio(completion, total_j), 4),
            joules_per_token=_round(ratio(total_j, completion), 4),
            active_tokens_per_joule=whole.efficiency.tokens_per_joule,
            active_joules_per_token=whole.efficiency.joules_per_token,
            tokens_per_s=_round(ratio(completion, duration_s)),
        ),
        latency_ms=whole.latency_ms,
        ttft_ms=whole.ttft_ms,
        requests=whole.requests,
        by_model=by_model(tally, models),
        by_agent=by_agent(tally),
        governor=governed,
        alerts=alerts or AlertTracker().to_json(),
        model_events=tally.model_events_json(),
        bench=bench,
    )


def build_summary(**kwargs: Any) -> dict[str, Any]:
    """`summarize(...)` as the export schema's JSON document."""
    return summarize(**kwargs).to_json()


def aligned_counter_j(
    start_j: float,
    start_ts: float,
    end_j: float,
    end_ts: float,
    first_ts: float,
    first_w: float,
    last_ts: float,
    last_w: float,
) -> float:
    """An energy counter's delta cut to the window [first_ts, last_ts] that the power samples' integral covers.

    The counter is read at start_ts and end_ts, a few to tens of ms away from the first and last 20 ms sample;
    over a short session that edge alone is ~1% of the energy. The edges are corrected with the power there.
    """
    return (end_j - start_j) - last_w * (end_ts - last_ts) - first_w * (first_ts - start_ts)


# ---- alerts ------------------------------------------------------------------------------------------------------
ALERT_HINTS = {
    "power": "the GPU runs at its power limit: lower num_ctx or set OLLAMA_KV_CACHE_TYPE=q8_0, or cap the power "
    "(nvidia-smi -pl) where tokens/J peaks",
    "temperature": "the GPU runs hot: check airflow and inlet temperature, or lower the power limit",
    "hw_slowdown": "hardware slowdown (power brake or thermal): check the power supply and cooling "
    "(nvidia-smi -q -d PERFORMANCE)",
    "thermal": "the driver slows the clocks for heat: improve cooling or lower the power limit",
    "power_cap": "clocks are held back by the power cap: expected under heavy load; if constant, a lower cap "
    "often gives more tokens per joule",
}
REASON_KINDS = {
    "hw_slowdown": "hw_slowdown",
    "hw_power_brake": "hw_slowdown",
    "sw_thermal": "thermal",
    "hw_thermal": "thermal",
    "sw_power_cap": "power_cap",
}


@dataclass
class _Alert:
    seconds: float = 0.0
    episodes: int = 0
    peak: float | None = None
    active: bool = False


class AlertTracker:
    """Time spent in each alert condition, fed once a second with every GPU's snapshot (any thread)."""

    def __init__(self, power_alert_w: float = 0.0, temp_alert_c: float = 87.0) -> None:
        self.power_alert_w = power_alert_w
        self.temp_alert_c = temp_alert_c
        self._alerts = {kind: _Alert() for kind in ALERT_HINTS}
        self._last_ts: dict[int, float] = {}
        self._limit_w: float | None = None

    def power_threshold_w(self, limit_w: float | None) -> float | None:
        if self.power_alert_w > 0:
            return self.power_alert_w
        return 0.95 * limit_w if limit_w else None

    def add(self, snapshots: Iterable[GpuSnapshot]) -> None:
        for s in snapshots:
            self.add_reading(s.index, s.ts, s.power_w, s.temp_c, s.clock_event_reasons, s.power_limit_w)

    def add_reading(
        self,
        gpu: int,
        ts: float,
        power_w: float | None,
        temp_c: float | None,
        reasons: Iterable[str],
        power_limit_w: float | None,
    ) -> None:
        last = self._last_ts.get(gpu)
        dt = min(max(ts - last, 0.0), 5.0) if last is not None else 1.0
        self._last_ts[gpu] = ts
        if power_limit_w:
            self._limit_w = power_limit_w
        threshold = self.power_threshold_w(power_limit_w or self._limit_w)
        kinds = {REASON_KINDS[r] for r in reasons if r in REASON_KINDS}
        on = {
            "power": (threshold is not None and power_w is not None and power_w >= threshold, power_w),
            "temperature": (temp_c is not None and temp_c >= self.temp_alert_c, temp_c),
            **{kind: (kind in kinds, None) for kind in ("hw_slowdown", "thermal", "power_cap")},
        }
        for kind, (active, value) in on.items():
            alert = self._alerts[kind]
            if value is not None:
                alert.peak = value if alert.peak is None else max(alert.peak, value)
            if active:
                alert.seconds += dt
                if not alert.active:
                    alert.episodes += 1
            alert.active = active

    def to_json(self) -> dict[str, Any]:
        threshold = self.power_threshold_w(self._limit_w)
        out: dict[str, Any] = {}
        for kind, alert in self._alerts.items():
            row = {
                "seconds": round(alert.seconds, 1),
                "episodes": alert.episodes,
                "active": alert.active,
                "hint": ALERT_HINTS[kind],
            }
            if kind == "power":
                row.update(threshold_w=_round(threshold, 1), max_w=_round(alert.peak, 1))
            elif kind == "temperature":
                row.update(threshold_c=self.temp_alert_c, max_c=_round(alert.peak, 1))
            out[kind] = row
        out["total_episodes"] = sum(a.episodes for a in self._alerts.values())
        return out


# ---- summaries of stored sessions ----------------------------------------------------------------------------------
def summarize_stored(stored: StoredSession) -> Summary:
    """The summary of a session read back from the store (`claw_tui.store.StoredSession`).

    Sessions save their running totals every second; a session that died before its first save (or a store from
    an older claw) gets totals rebuilt from its 1 Hz telemetry, marked `approximate`.
    """
    stats = stored.stats or {}
    saved_energy = stats.get("energy")
    approximate = not saved_energy
    if saved_energy:
        energy, counter_j = saved_energy, stats.get("counter_j")
    else:
        energy, counter_j = energy_from_telemetry(stored.telemetry, stored.records)
    alerts = stats.get("alerts")
    if not alerts:
        tracker = AlertTracker()
        for row in stored.telemetry:
            tracker.add_reading(row["gpu"], row["ts"], row["power_w"], row["temp_c"], (), None)
        alerts = tracker.to_json()
    session = stored.session_json()
    if approximate:
        session["approximate"] = True
    return summarize(
        session=session,
        gpus=stats.get("gpus") or [],
        records=stored.records,
        energy=energy,
        counter_j=counter_j,
        power_stddev_w=stats.get("power_stddev_w"),
        governor=stats.get("governor") or governor_from_events(stored.events),
        alerts=alerts,
        model_events=stored.model_events,
        tally=_saved_tally(stats, stored.records),
        models=stats.get("models") or {},
        idle_baseline_w=stats.get("idle_baseline_w"),
    )


def summary_from_stored(stored: StoredSession) -> dict[str, Any]:
    """`summarize_stored(stored)` as the export schema's JSON document."""
    return summarize_stored(stored).to_json()


def _saved_tally(stats: dict[str, Any], records: Sequence[RequestRecord]) -> SavedTally | None:
    """The running totals saved with the session, when they count more requests than the store still holds (old
    rows pruned); otherwise the stored records themselves (they include the last second the totals may miss)."""
    saved = stats.get("tally")
    if not isinstance(saved, dict):
        return None
    total = ((saved.get("whole") or {}).get("requests") or {}).get("total") or 0
    return SavedTally(saved) if total > len(records) else None


def energy_from_telemetry(
    rows: list[dict[str, Any]], records: Sequence[RequestRecord]
) -> tuple[dict[str, Any], float | None]:
    """Session energy from 1 Hz rows: trapezoid of power per GPU; the energy counter's delta when it was read."""
    total_j = seconds = 0.0
    counter_j: float | None = 0.0
    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_gpu.setdefault(row["gpu"], []).append(row)
    for gpu_rows in by_gpu.values():
        for a, b in itertools.pairwise(gpu_rows):
            if a["power_w"] is not None and b["power_w"] is not None and b["ts"] > a["ts"]:
                total_j += (b["ts"] - a["ts"]) * (a["power_w"] + b["power_w"]) / 2
                seconds += b["ts"] - a["ts"]
        counters = [r["energy_j"] for r in gpu_rows if r["energy_j"] is not None]
        if len(counters) >= 2 and counter_j is not None:
            counter_j += counters[-1] - counters[0]
        else:
            counter_j = None
    if not by_gpu:
        counter_j = None
    active_j = min(sum(r.energy_j for r in records), total_j) if total_j else sum(r.energy_j for r in records)
    active_s = min(_union_seconds(records), seconds) if seconds else 0.0
    total_j = max(total_j, active_j)
    return (
        {
            "total_j": total_j,
            "idle_j": total_j - active_j,
            "active_j": active_j,
            "idle_s": max(seconds - active_s, 0.0),
            "active_s": active_s,
        },
        counter_j,
    )


def _union_seconds(records: Sequence[RequestRecord]) -> float:
    spans = sorted((r.t_upstream_start or r.t_arrival, r.t_end) for r in records if r.t_end is not None)
    total, end = 0.0, -math.inf
    for start, stop in spans:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def governor_from_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A rough governor section from its events, for sessions that never saved stats."""
    wakes = [e["data"].get("wake_ms") for e in events if e["kind"] == "governor.wake"]
    wakes = [w for w in wakes if isinstance(w, (int, float))]
    downclocked_s, since = 0.0, None
    for event in events:
        if event["kind"] == "governor.downclock":
            since = event["ts"]
        elif event["kind"] in ("governor.wake", "governor.reset") and since is not None:
            downclocked_s += event["ts"] - since
            since = None
    return {
        "enabled": any(e["kind"] in ("governor.enabled", "governor.downclock") for e in events),
        "downclocked_s": round(downclocked_s, 3),
        "wakes": len(wakes),
        "wake_latency_ms_p95": _round(percentile(wakes, 95)),
    }
