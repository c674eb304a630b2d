"""GPU alerts: power near the limit, temperature, clock slowdowns, VRAM pressure and lost telemetry.

Each alert says what is wrong in words and what to do about it. A condition must hold for `raise_after_s` before
it raises (a 20 ms power spike or one flickering reason bit is not an alert) and must be gone for `clear_after_s`
before the alert ends. The monitor reads a TelemetrySampler after each poll; the faces read `active()` and
`to_json()` (the session summary's "alerts").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claw_tui.telemetry.types import GpuSnapshot

if TYPE_CHECKING:
    from claw_tui.telemetry.sampler import TelemetrySampler

log = logging.getLogger(__name__)

POWER_LIMIT_SHARE = 0.95  # power_alert_w = 0 means 95% of the power limit
TEMP_CRITICAL_MARGIN_C = 5.0
VRAM_ALERT_PCT = 95.0

SLOWDOWN_HINTS = {
    "hw_thermal": "the GPU is too hot: check cooling/airflow (fans, intake temperature, blocked vents)",
    "sw_thermal": "the driver slows the clocks to cool the GPU: check cooling/airflow",
    "hw_slowdown": "hardware slowdown (too hot or power supply trouble): check cooling/airflow and the PSU",
    "hw_power_brake": "the external power brake is asserted: check the power supply and its cables",
}
SLOWDOWN_WORDS = {
    "hw_thermal": "hardware thermal slowdown",
    "sw_thermal": "software thermal slowdown",
    "hw_slowdown": "hardware slowdown",
    "hw_power_brake": "hardware power brake",
}
POWER_CAP_HINT = "power cap active: consider a lower clock or fewer parallel requests (OLLAMA_NUM_PARALLEL)"
POWER_HIGH_HINT = (
    "near the power limit: lower num_ctx or set OLLAMA_KV_CACHE_TYPE=q8_0 to cut memory traffic, "
    "or serve fewer parallel requests"
)
TEMP_HINT = "check cooling/airflow: fans, intake temperature, blocked vents; the GPU throttles when hotter"
VRAM_HINT = "lower num_ctx or set OLLAMA_KV_CACHE_TYPE=q8_0; unload idle models (keep_alive) before loading more"
TELEMETRY_HINT = "check `nvidia-smi` and the driver; claw reopens NVML every few seconds and resumes by itself"

SEVERITIES = ("warning", "critical")


@dataclass(frozen=True)
class AlertThresholds:
    power_alert_w: float = 0.0  # 0 = 95% of each GPU's power limit
    temp_alert_c: float = 87.0
    vram_alert_pct: float = VRAM_ALERT_PCT
    power_window_s: float = 2.0  # the alert looks at the mean power over this window, not single samples
    raise_after_s: float = 2.0
    clear_after_s: float = 5.0

    def power_threshold_w(self, limit_w: float | None) -> float | None:
        if self.power_alert_w > 0:
            return self.power_alert_w
        return limit_w * POWER_LIMIT_SHARE if limit_w else None


@dataclass
class Alert:
    key: str  # kind and GPU, e.g. "power:0"
    kind: str  # power | temperature | slowdown | vram | telemetry
    gpu: int | None
    severity: str
    message: str
    hint: str
    since: float
    last_seen: float
    value: float | None = None
    threshold: float | None = None
    peak: float | None = None
    ended: float | None = None
    clearing: bool = False  # the condition is gone; the alert ends once it stays gone for clear_after_s

    @property
    def active(self) -> bool:
        return self.ended is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "gpu": self.gpu,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "since": self.since,
            "ended": self.ended,
            "clearing": self.clearing,
            "duration_s": round((self.ended or self.last_seen) - self.since, 3),
            "value": _round(self.value),
            "peak": _round(self.peak),
            "threshold": _round(self.threshold),
        }


@dataclass(frozen=True)
class Condition:
    """One alert condition that holds right now."""

    key: str
    kind: str
    gpu: int | None
    severity: str
    message: str
    hint: str
    value: float | None = None
    threshold: float | None = None
    immediate: bool = False  # raise at once (lost telemetry), no debounce


@dataclass
class _Pending:
    since: float


@dataclass
class AlertMonitor:
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    clock: Callable[[], float] = time.time
    on_raise: Callable[[Alert], None] | None = None
    on_clear: Callable[[Alert], None] | None = None
    history_len: int = 100

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Alert] = {}
        self._pending: dict[str, _Pending] = {}
        self._absent_since: dict[str, float] = {}
        self._ended: deque[Alert] = deque(maxlen=self.history_len)
        self._raised: Counter[str] = Counter()

    # ---- feeding ------------------------------------------------------------------------------------------------
    def observe(self, sampler: TelemetrySampler) -> None:
        """Read a TelemetrySampler (state, latest snapshots, recent power) and update the alerts."""
        self.update(sampler_conditions(sampler, self.thresholds))

    def update(self, conditions: list[Condition], now: float | None = None) -> None:
        now = self.clock() if now is None else now
        raised: list[Alert] = []
        cleared: list[Alert] = []
        with self._lock:
            present = {c.key: c for c in conditions}
            for key, condition in present.items():
                self._absent_since.pop(key, None)
                alert = self._active.get(key)
                if alert is not None:
                    _refresh(alert, condition, now)
                    continue
                pending = self._pending.setdefault(key, _Pending(now))
                if condition.immediate or now - pending.since >= self.thresholds.raise_after_s:
                    alert = _new_alert(condition, pending.since, now)
                    self._active[key] = alert
                    self._pending.pop(key, None)
                    self._raised[condition.kind] += 1
                    raised.append(alert)
            for key in [k for k in self._pending if k not in present]:
                del self._pending[key]
            for key, alert in list(self._active.items()):
                if key in present:
                    continue
                absent = self._absent_since.setdefault(key, now)
                alert.clearing = True
                if alert.kind == "telemetry" or now - absent >= self.thresholds.clear_after_s:
                    alert.ended = now
                    del self._active[key]
                    del self._absent_since[key]
                    self._ended.appendleft(alert)
                    cleared.append(alert)
        for alert in raised:
            log.warning("alert: %s (%s)", alert.message, alert.hint)
            if self.on_raise is not None:
                self.on_raise(alert)
        for alert in cleared:
            log.info("alert over: %s", alert.message)
            if self.on_clear is not None:
                self.on_clear(alert)

    # ---- reading --------------------------------------------------------------------------------------------------
    def active(self, gpu: int | None = None) -> list[Alert]:
        """Active alerts, most severe first, then oldest first; with `gpu`, that GPU's and the global ones."""
        with self._lock:
            alerts = [a for a in self._active.values() if gpu is None or a.gpu in (None, gpu)]
        return sorted(alerts, key=lambda a: (-SEVERITIES.index(a.severity), a.since))

    def recent(self, limit: int = 20) -> list[Alert]:
        with self._lock:
            return list(self._ended)[:limit]

    def to_json(self) -> dict[str, Any]:
        t = self.thresholds
        with self._lock:
            raised = dict(sorted(self._raised.items()))
        return {
            "active": [a.to_json() for a in self.active()],
            "recent": [a.to_json() for a in self.recent()],
            "raised": raised,
            "thresholds": {
                "power_alert_w": t.power_alert_w or None,
                "power_alert_share_of_limit": POWER_LIMIT_SHARE if not t.power_alert_w else None,
                "temp_alert_c": t.temp_alert_c,
                "vram_alert_pct": t.vram_alert_pct,
            },
        }


# ---- the conditions -----------------------------------------------------------------------------------------------


def sampler_conditions(sampler: TelemetrySampler, thresholds: AlertThresholds) -> list[Condition]:
    if sampler.state == "error":
        return [
            Condition(
                "telemetry",
                "telemetry",
                None,
                "critical",
                f"GPU telemetry lost: {sampler.message}",
                TELEMETRY_HINT,
                immediate=True,
            )
        ]
    if sampler.state != "ok":
        return []
    statics = {s.index: s for s in sampler.statics()}
    conditions: list[Condition] = []
    for position, snapshot in enumerate(sampler.latest_all()):
        static = statics.get(snapshot.index)
        limit = snapshot.power_limit_w or (static.power_limit_w if static else None)
        mean_w = sampler.mean_power_w(position, thresholds.power_window_s)
        conditions += gpu_conditions(snapshot, mean_w, limit, thresholds)
    return conditions


def gpu_conditions(
    snapshot: GpuSnapshot, mean_power_w: float | None, power_limit_w: float | None, thresholds: AlertThresholds
) -> list[Condition]:
    """The alert conditions one GPU's state meets; `mean_power_w` is its mean over the recent window."""
    gpu = snapshot.index
    reasons = set(snapshot.clock_event_reasons)
    out: list[Condition] = []
    power_threshold = thresholds.power_threshold_w(power_limit_w)
    power = mean_power_w if mean_power_w is not None else snapshot.power_w
    if power_threshold is not None and power is not None and power >= power_threshold:
        capped = "sw_power_cap" in reasons
        over_limit = power_limit_w is not None and power >= power_limit_w
        what = "at its power cap" if capped else "near its power limit" if power_limit_w else "above the alert"
        out.append(
            Condition(
                f"power:{gpu}",
                "power",
                gpu,
                "critical" if over_limit else "warning",
                f"GPU {gpu} {what}: {power:.0f} W (alert at {power_threshold:.0f} W)",
                POWER_CAP_HINT if capped else POWER_HIGH_HINT,
                power,
                power_threshold,
            )
        )
    if snapshot.temp_c is not None and snapshot.temp_c >= thresholds.temp_alert_c:
        critical = snapshot.temp_c >= thresholds.temp_alert_c + TEMP_CRITICAL_MARGIN_C
        out.append(
            Condition(
                f"temperature:{gpu}",
                "temperature",
                gpu,
                "critical" if critical else "warning",
                f"GPU {gpu} is hot: {snapshot.temp_c:.0f} °C (alert at {thresholds.temp_alert_c:.0f} °C)",
                TEMP_HINT,
                snapshot.temp_c,
                thresholds.temp_alert_c,
            )
        )
    slowdowns = [reason for reason in SLOWDOWN_HINTS if reason in reasons]
    if slowdowns:
        words = ", ".join(SLOWDOWN_WORDS[r] for r in slowdowns)
        clock = f" (SM {snapshot.sm_clock_mhz} MHz)" if snapshot.sm_clock_mhz is not None else ""
        out.append(
            Condition(
                f"slowdown:{gpu}",
                "slowdown",
                gpu,
                "critical" if any(r.startswith("hw_") for r in slowdowns) else "warning",
                f"GPU {gpu} clocks held down: {words}{clock}",
                "; ".join(dict.fromkeys(SLOWDOWN_HINTS[r] for r in slowdowns)),
            )
        )
    if snapshot.vram_used_mib is not None and snapshot.vram_total_mib:
        used_pct = snapshot.vram_used_mib / snapshot.vram_total_mib * 100
        if used_pct >= thresholds.vram_alert_pct:
            out.append(
                Condition(
                    f"vram:{gpu}",
                    "vram",
                    gpu,
                    "warning",
                    f"GPU {gpu} VRAM almost full: {used_pct:.0f}% used",
                    VRAM_HINT,
                    used_pct,
                    thresholds.vram_alert_pct,
                )
            )
    return out


def _new_alert(condition: Condition, since: float, now: float) -> Alert:
    return Alert(
        key=condition.key,
        kind=condition.kind,
        gpu=condition.gpu,
        severity=condition.severity,
        message=condition.message,
        hint=condition.hint,
        since=since,
        last_seen=now,
        value=condition.value,
        threshold=condition.threshold,
        peak=condition.value,
    )


def _refresh(alert: Alert, condition: Condition, now: float) -> None:
    alert.last_seen = now
    alert.clearing = False
    alert.message, alert.hint, alert.value = condition.message, condition.hint, condition.value
    alert.threshold = condition.threshold
    if SEVERITIES.index(condition.severity) > SEVERITIES.index(alert.severity):
        alert.severity = condition.severity
    if condition.value is not None:
        alert.peak = condition.value if alert.peak is None else max(alert.peak, condition.value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
