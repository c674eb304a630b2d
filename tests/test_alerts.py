"""Alerts: thresholds, debounce and hysteresis on a fake clock, hints that say what to do, and their JSON."""

from __future__ import annotations

import pytest

from claw_tui.telemetry.alerts import AlertMonitor, AlertThresholds, gpu_conditions
from claw_tui.telemetry.types import GpuSnapshot


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def snap(**fields) -> GpuSnapshot:
    values = {
        "index": 0,
        "name": "NVIDIA H200",
        "ts": 0.0,
        "power_w": 120.0,
        "power_limit_w": 700.0,
        "temp_c": 40.0,
        "sm_clock_mhz": 1980,
        "vram_used_mib": 1000.0,
        "vram_total_mib": 143771.0,
        "clock_event_reasons": [],
    }
    values.update(fields)
    return GpuSnapshot(**values)


def kinds(conditions) -> list[str]:
    return [c.kind for c in conditions]


# ----- which conditions a GPU state meets -------------------------------------------------------------------------


def test_quiet_gpu_meets_no_condition():
    assert gpu_conditions(snap(), 120.0, 700.0, AlertThresholds()) == []


def test_power_threshold_defaults_to_95pct_of_the_limit():
    thresholds = AlertThresholds()
    assert gpu_conditions(snap(), 664.0, 700.0, thresholds) == []
    [power] = gpu_conditions(snap(), 666.0, 700.0, thresholds)
    assert power.kind == "power" and power.threshold == pytest.approx(665.0) and power.severity == "warning"
    assert "near its power limit: 666 W" in power.message
    assert "lower num_ctx or set OLLAMA_KV_CACHE_TYPE=q8_0" in power.hint


def test_power_cap_reason_gives_the_cap_hint_and_over_the_limit_is_critical():
    [power] = gpu_conditions(snap(clock_event_reasons=["sw_power_cap"]), 702.0, 700.0, AlertThresholds())
    assert power.severity == "critical"
    assert power.hint.startswith("power cap active: consider a lower clock or fewer parallel requests")


def test_configured_power_alert_overrides_the_limit_share():
    thresholds = AlertThresholds(power_alert_w=300.0)
    [power] = gpu_conditions(snap(), 310.0, 700.0, thresholds)
    assert power.threshold == 300.0
    assert gpu_conditions(snap(power_limit_w=None), 310.0, None, thresholds)[0].kind == "power"
    # no limit known and no threshold configured: no power alert at all
    assert gpu_conditions(snap(power_limit_w=None), 900.0, None, AlertThresholds()) == []


def test_mean_power_is_used_not_a_single_spike():
    # a 20 ms sample over the limit (the snapshot) with a calm mean does not alert
    assert gpu_conditions(snap(power_w=720.0), 400.0, 700.0, AlertThresholds()) == []


def test_temperature_warning_then_critical():
    thresholds = AlertThresholds(temp_alert_c=80.0)
    [warm] = gpu_conditions(snap(temp_c=81.0), None, 700.0, thresholds)
    assert warm.kind == "temperature" and warm.severity == "warning" and "check cooling/airflow" in warm.hint
    [hot] = gpu_conditions(snap(temp_c=86.0), None, 700.0, thresholds)
    assert hot.severity == "critical"


@pytest.mark.parametrize(
    "reason, severity, hint",
    [
        ("hw_slowdown", "critical", "check cooling/airflow and the PSU"),
        ("sw_thermal", "warning", "check cooling/airflow"),
        ("hw_thermal", "critical", "check cooling/airflow"),
        ("hw_power_brake", "critical", "check the power supply"),
    ],
)
def test_slowdown_reasons_alert_with_their_hint(reason, severity, hint):
    [slow] = gpu_conditions(snap(clock_event_reasons=[reason], sm_clock_mhz=1200), None, 700.0, AlertThresholds())
    assert slow.kind == "slowdown" and slow.severity == severity and hint in slow.hint
    assert "SM 1200 MHz" in slow.message


def test_idle_and_app_clock_reasons_are_not_alerts():
    reasons = ["gpu_idle", "app_clocks", "sync_boost"]
    assert gpu_conditions(snap(clock_event_reasons=reasons), None, 700.0, AlertThresholds()) == []


def test_vram_almost_full():
    [vram] = gpu_conditions(snap(vram_used_mib=140_000.0), None, 700.0, AlertThresholds())
    assert vram.kind == "vram" and "OLLAMA_KV_CACHE_TYPE=q8_0" in vram.hint


def test_missing_fields_meet_no_condition():
    bare = GpuSnapshot(index=0, name="x", ts=0.0)
    assert gpu_conditions(bare, None, None, AlertThresholds()) == []


# ----- the monitor: debounce, hysteresis, history ---------------------------------------------------------------------


def power(mean: float, reasons=()) -> list:
    return gpu_conditions(snap(clock_event_reasons=list(reasons)), mean, 700.0, AlertThresholds())


def test_alert_raises_after_the_condition_holds_and_clears_after_it_is_gone():
    clock = FakeClock()
    raised, cleared = [], []
    monitor = AlertMonitor(
        AlertThresholds(raise_after_s=2.0, clear_after_s=5.0),
        clock=clock,
        on_raise=raised.append,
        on_clear=cleared.append,
    )
    for _ in range(7):  # 1.5 s over the threshold: not yet
        monitor.update(power(690.0))
        clock.now += 0.25
    assert monitor.active() == [] and raised == []
    monitor.update(power(690.0))
    clock.now += 0.25
    monitor.update(power(690.0))
    [alert] = monitor.active()
    assert raised == [alert] and alert.since == 1_000.0
    for _ in range(16):  # 4 s below: still active, marked clearing
        clock.now += 0.25
        monitor.update(power(300.0))
    assert monitor.active()[0].clearing
    clock.now += 1.25
    monitor.update(power(300.0))
    assert monitor.active() == [] and cleared == [alert]
    assert alert.ended == clock.now and monitor.recent() == [alert]
    assert monitor.to_json()["raised"] == {"power": 1}


def test_a_blip_under_the_threshold_does_not_end_the_alert():
    clock = FakeClock()
    monitor = AlertMonitor(AlertThresholds(raise_after_s=0.0, clear_after_s=5.0), clock=clock)
    monitor.update(power(690.0))
    clock.now += 1.0
    monitor.update(power(600.0))
    clock.now += 1.0
    monitor.update(power(695.0))
    [alert] = monitor.active()
    assert not alert.clearing and alert.peak == 695.0 and alert.value == 695.0
    assert monitor.to_json()["raised"] == {"power": 1}


def test_short_flickers_never_raise():
    clock = FakeClock()
    monitor = AlertMonitor(AlertThresholds(raise_after_s=2.0), clock=clock)
    for i in range(40):
        monitor.update(power(690.0 if i % 4 == 0 else 300.0))
        clock.now += 0.25
    assert monitor.active() == [] and monitor.to_json()["raised"] == {}


def test_severity_escalates_and_hint_follows_the_state():
    clock = FakeClock()
    monitor = AlertMonitor(AlertThresholds(raise_after_s=0.0), clock=clock)
    monitor.update(power(670.0))
    assert monitor.active()[0].severity == "warning"
    clock.now += 1
    monitor.update(power(705.0, ["sw_power_cap"]))
    [alert] = monitor.active()
    assert alert.severity == "critical" and alert.hint.startswith("power cap active")


def test_lost_telemetry_raises_at_once_and_clears_at_once():
    class Sampler:
        state, message = "error", "NVML: the driver is gone (Driver Not Loaded); reopen when it returns"

    clock = FakeClock()
    monitor = AlertMonitor(clock=clock)
    monitor.observe(Sampler)
    [alert] = monitor.active()
    assert alert.kind == "telemetry" and alert.severity == "critical" and alert.gpu is None
    assert "driver is gone" in alert.message and "nvidia-smi" in alert.hint
    Sampler.state = "none"
    clock.now += 0.25
    monitor.observe(Sampler)
    assert monitor.active() == []


def test_active_alerts_sorted_by_severity_and_filtered_by_gpu():
    clock = FakeClock()
    monitor = AlertMonitor(AlertThresholds(raise_after_s=0.0), clock=clock)
    warm = gpu_conditions(snap(index=1, temp_c=88.0), None, 700.0, AlertThresholds())
    capped = gpu_conditions(snap(index=0, clock_event_reasons=["hw_thermal"]), None, 700.0, AlertThresholds())
    monitor.update(warm + capped)
    assert [a.kind for a in monitor.active()] == ["slowdown", "temperature"]
    assert [a.gpu for a in monitor.active(gpu=1)] == [1]
    data = monitor.to_json()
    assert [a["kind"] for a in data["active"]] == ["slowdown", "temperature"]
    assert data["thresholds"]["power_alert_share_of_limit"] == 0.95 and data["thresholds"]["temp_alert_c"] == 87.0
    assert set(data["active"][0]) >= {"kind", "gpu", "severity", "message", "hint", "since", "duration_s", "value"}
