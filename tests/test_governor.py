"""The idle downclock governor: NVML path against a fake NVML that records calls, the simulator path, dry runs,
the POST /claw/v1/governor endpoint, deep idle, the state file and recovery from it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from claw_tui.config import GovernorConfig
from claw_tui.governor import (
    ClockControlError,
    DryRunClockControl,
    Governor,
    NvmlClockControl,
    StateFile,
    clock_control_for,
)
from claw_tui.store import load_session
from tests.conftest import demo_config, start_demo_session, wait_until
from tests.fake_nvml.pynvml import FakeNvml

LOCK = "nvmlDeviceSetGpuLockedClocks"
RESET = "nvmlDeviceResetGpuLockedClocks"


def chat(url: str, model: str = "qwen3:8b", **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}], "stream": False, **extra}
    return httpx.post(url + "/api/chat", json=body, timeout=30)


def governor_config(**values) -> GovernorConfig:
    cfg = GovernorConfig(enabled=True, idle_after_s=0.2, allow_clock_control=True)
    for key, value in values.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture
def nvml_session(tmp_path):
    """A demo session (simulated Ollama) whose governor drives a fake NVML instead of the simulated GPU."""
    fake = FakeNvml()
    config = demo_config()
    config.governor.enabled = True
    config.governor.idle_after_s = 1.0  # well above the gap between back-to-back requests on a busy machine
    config.governor.allow_clock_control = True
    config.governor.state_file = str(tmp_path / "governor-locked.json")
    runner = start_demo_session(tmp_path, config, clock_control=NvmlClockControl(fake))
    yield runner, fake, tmp_path / "governor-locked.json"
    runner.stop()


def test_nvml_locks_only_after_idle_resets_before_forwarding_and_on_exit(nvml_session):
    runner, fake, state_path = nvml_session
    session = runner.session
    url = session.gateway_url
    seen_at_forward = []

    async def after_wake(record):  # runs after the governor's hook, just before the request goes upstream
        seen_at_forward.append((fake.locked[0], [c[0] for c in fake.setter_calls()]))

    session.gateway.before_forward.append(after_wake)

    # Busy: requests back to back keep the clocks alone.
    for _ in range(3):
        assert chat(url).status_code == 200
    assert fake.setter_calls() == []
    assert seen_at_forward[-1] == (None, [])

    # Idle past idle_after_s: one lock at the lowest supported clock, noted in the state file first.
    wait_until(lambda: session.governor_json()["state"] == "downclocked", timeout=10)
    assert fake.setter_calls() == [(LOCK, (0, 345, 345))]
    note = json.loads(state_path.read_text())
    assert note["pid"] == os.getpid() and note["gpus"] == [0] and note["kind"] == "nvml"

    # The next request: clocks reset before it is forwarded, and its record carries the wake latency.
    response = chat(url)
    assert response.status_code == 200
    locked_then, calls_then = seen_at_forward[-1]
    assert locked_then is None and calls_then[-1] == RESET
    assert not state_path.exists()
    record = session.ledger.get(response.headers["x-claw-request-id"])
    assert record.wake_ms is not None and record.wake_ms < 100

    # Downclocked again, then the session stops: reset on the way out, no note left behind.
    wait_until(lambda: session.governor_json()["state"] == "downclocked", timeout=10)
    assert state_path.exists()
    runner.stop()
    assert fake.setter_calls()[-1] == (RESET, (0,))
    assert fake.locked[0] is None
    assert not state_path.exists()


def test_without_permission_the_governor_says_so_and_runs_dry(tmp_path):
    fake = FakeNvml(no_permission=True)
    config = demo_config()
    config.governor.enabled = True
    config.governor.idle_after_s = 0.1
    config.governor.state_file = str(tmp_path / "state.json")
    runner = start_demo_session(tmp_path, config, clock_control=NvmlClockControl(fake))
    try:
        session = runner.session
        wait_until(lambda: session.governor_json()["mode"] == "dry-run", timeout=10)
        status = session.governor_json()
        assert "needs root" in status["reason"] and "Insufficient Permissions" not in status["reason"]
        assert "dry run" in status["message"]
        wait_until(lambda: session.governor_json()["state"] == "downclocked", timeout=10)  # what it would do
        locks = [c for c in fake.setter_calls() if c[0] == LOCK]
        assert len(locks) == 1  # tried once, then never again
        assert not (tmp_path / "state.json").exists()
        assert chat(session.gateway_url).status_code == 200
        assert len([c for c in fake.setter_calls() if c[0] == LOCK]) == 1
    finally:
        runner.stop()


def test_clock_control_is_dry_run_unless_allowed():
    fake = FakeNvml()
    control = clock_control_for(GovernorConfig(allow_clock_control=False), nvml=fake)
    assert isinstance(control, DryRunClockControl)
    assert "allow_clock_control = false" in control.reason
    assert fake.calls == []  # NVML is not even opened
    absent = clock_control_for(GovernorConfig(allow_clock_control=True), nvml=FakeNvml(absent=True))
    assert absent.kind == "dry-run" and "NVML unavailable" in absent.reason
    assert clock_control_for(GovernorConfig(allow_clock_control=True), nvml=fake).kind == "nvml"


class SteppedClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def steps(governor: Governor, clock: SteppedClock, seconds: float, dt: float = 0.01) -> None:
    """Drive the governor as its loop would, on an injected clock (its own loop ticks once an hour in these tests)."""
    for _ in range(round(seconds / dt)):
        clock.now += dt
        await governor.step()


def test_dry_run_never_calls_a_setter(tmp_path):
    async def scenario():
        in_flight = [0]
        clock = SteppedClock()
        control = DryRunClockControl("test")
        governor = Governor(
            governor_config(idle_after_s=0.05),
            control,
            in_flight=lambda: in_flight[0],
            state_file=StateFile(tmp_path / "s.json"),
            tick_s=3600,
            clock=clock,
        )
        await governor.start()
        await steps(governor, clock, 0.2)
        assert governor.state == "downclocked"
        await governor.wake(None)
        assert governor.state == "active" and governor.wakes == 1
        await governor.stop()
        return control.calls

    calls = asyncio.run(scenario())
    assert [c[0] for c in calls] == ["lock", "reset"]
    assert not (tmp_path / "s.json").exists()


def test_simulated_gpu_downclocks_saves_idle_power_and_wakes(tmp_path):
    config = demo_config()
    config.governor.enabled = True
    config.governor.idle_after_s = 0.2
    runner = start_demo_session(tmp_path, config)
    try:
        session = runner.session
        gpu = session.sim.gpus[0]
        assert chat(session.gateway_url).status_code == 200  # loads a model: parking power at full clocks
        wait_until(lambda: gpu.locked_sm_clock() == 345, timeout=10)
        wait_until(lambda: gpu.snapshot().power_w < 100, timeout=10)  # ~118 W resident at full clock
        response = chat(session.gateway_url)
        assert response.status_code == 200
        assert session.ledger.get(response.headers["x-claw-request-id"]).wake_ms is not None
        wait_until(lambda: session.governor_json()["state"] == "downclocked", timeout=10)
        summary = httpx.get(session.gateway_url + "/claw/v1/summary", timeout=30).json()
        g = summary["governor"]
        assert g["enabled"] is True and g["mode"] == "sim" and g["wakes"] >= 1
        assert g["downclocked_s"] > 0 and g["wake_latency_ms_p95"] is not None
        assert g["idle_power_w_downclocked"] < g["idle_power_w_normal"]
        status = httpx.get(session.gateway_url + "/claw/v1/status").json()
        assert status["governor"]["state"] == "downclocked"
    finally:
        runner.stop()
    kinds = [e["kind"] for e in load_session(tmp_path / "sessions.db").events]
    assert "governor.downclock" in kinds and "governor.wake" in kinds


def test_post_governor_toggles_and_rejects_bad_bodies(demo):
    url = demo.gateway_url + "/claw/v1/governor"
    gpu = demo.sim.gpus[0]
    assert httpx.get(url).json()["state"] == "off"
    on = httpx.post(url, json={"enabled": True, "idle_after_s": 0.1}).json()
    assert on["enabled"] is True and on["state"] in ("idle_pending", "active") and on["idle_after_s"] == 0.1
    wait_until(lambda: gpu.locked_sm_clock() is not None, timeout=10)
    off = httpx.post(url, json={"enabled": False}).json()
    assert off["state"] == "off" and gpu.locked_sm_clock() is None  # disabling resets at once
    for body, needle in (
        (b"{nope", "invalid JSON"),
        (b'{"enabled": "yes"}', "enabled"),
        (b'{"enabled": true, "idle_after_s": -1}', "idle_after_s"),
        (b"[]", "JSON object"),
    ):
        response = httpx.post(url, content=body)
        assert response.status_code == 400 and needle in response.json()["error"]
    assert httpx.get(url).json()["state"] == "off"


def test_deep_idle_unloads_resident_models(tmp_path):
    config = demo_config()
    config.governor.enabled = True
    config.governor.idle_after_s = 0.1
    config.governor.unload_after_s = 0.3
    runner = start_demo_session(tmp_path, config)
    try:
        session = runner.session
        assert chat(session.gateway_url).status_code == 200
        assert chat(session.gateway_url, model="llama3.2:3b").status_code == 200
        status = wait_until(lambda: (s := session.governor_json())["models_unloaded"] and s, timeout=10)
        assert sorted(status["models_unloaded"]) == ["llama3.2:3b", "qwen3:8b"]
        wait_until(lambda: not session.sim.gpus[0].resident(), timeout=10)
        assert httpx.get(session.gateway_url + "/api/ps").json()["models"] == []
        assert chat(session.gateway_url).status_code == 200  # loads again on demand
        assert session.governor_json()["models_unloaded"] == []
    finally:
        runner.stop()
    events = [e for e in load_session(tmp_path / "sessions.db").events if e["kind"] == "governor.unload"]
    assert sorted(events[0]["data"]["models"]) == ["llama3.2:3b", "qwen3:8b"]


def test_no_downclock_while_the_gpu_is_busy_outside_the_gateway(tmp_path):
    async def scenario():
        control = DryRunClockControl("test")
        busy = [True]
        clock = SteppedClock()
        governor = Governor(
            governor_config(idle_after_s=0.05),
            control,
            in_flight=lambda: 0,
            gpu_busy=lambda gpu: busy[0],
            tick_s=3600,
            clock=clock,
        )
        await governor.start()
        await steps(governor, clock, 0.2)  # four times idle_after_s, every step seeing the GPU busy
        assert governor.state == "active" and control.calls == []
        busy[0] = False
        await steps(governor, clock, 0.2)
        assert governor.state == "downclocked"
        busy[0] = True  # a job outside claw starts on a downclocked GPU: give it its clocks back
        await steps(governor, clock, 0.01)
        assert governor.state == "active" and control.calls[-1][0] == "reset"
        await governor.stop()

    asyncio.run(scenario())


# ---- the state file and recovery -----------------------------------------------------------------------------------
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def run_recovery(tmp_path, note: dict | str | None, control, reset_control=None) -> Governor:
    path = tmp_path / "governor-locked.json"
    if note is not None:
        path.write_text(note if isinstance(note, str) else json.dumps(note))

    async def scenario():
        governor = Governor(
            GovernorConfig(), control, in_flight=lambda: 0, state_file=StateFile(path), reset_control=reset_control
        )
        await governor.recover_left_locks()
        return governor

    return asyncio.run(scenario())


def test_start_resets_clocks_left_locked_by_a_dead_run(tmp_path):
    fake = FakeNvml(gpus=2)
    governor = run_recovery(
        tmp_path, {"pid": dead_pid(), "gpus": [0, 1], "mhz": 345, "kind": "nvml"}, NvmlClockControl(fake)
    )
    assert fake.setter_calls() == [(RESET, (0,)), (RESET, (1,))]
    assert not (tmp_path / "governor-locked.json").exists()
    assert "reset GPU clocks left locked" in governor.notices[0]


def test_recovery_resets_even_when_the_governor_now_runs_dry(tmp_path):
    fake = FakeNvml()
    run_recovery(
        tmp_path,
        {"pid": dead_pid(), "gpus": [0]},
        DryRunClockControl("allow_clock_control = false"),
        reset_control=lambda: NvmlClockControl(fake),
    )
    assert fake.setter_calls() == [(RESET, (0,))]
    assert not (tmp_path / "governor-locked.json").exists()


def test_an_unreadable_note_resets_every_gpu(tmp_path):
    fake = FakeNvml(gpus=2)
    run_recovery(tmp_path, "{not json", NvmlClockControl(fake))
    assert [c[0] for c in fake.setter_calls()] == [RESET, RESET]


def test_clocks_of_a_live_claw_are_left_alone(tmp_path):
    fake = FakeNvml()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        governor = run_recovery(tmp_path, {"pid": sleeper.pid, "gpus": [0]}, NvmlClockControl(fake))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert fake.setter_calls() == []
    assert (tmp_path / "governor-locked.json").exists()
    assert "another running claw" in governor.notices[0]


def test_a_failed_reset_keeps_the_note_for_the_next_start(tmp_path):
    fake = FakeNvml(fail_reset=True)
    governor = run_recovery(tmp_path, {"pid": dead_pid(), "gpus": [0]}, NvmlClockControl(fake))
    assert (tmp_path / "governor-locked.json").exists()
    assert "nvidia-smi -rgc" in governor.notices[0]


def test_nvml_errors_are_plain_messages():
    fake = FakeNvml(no_permission=True)
    control = NvmlClockControl(fake)
    with pytest.raises(ClockControlError) as info:
        control.lock_sm_clock(0, 345)
    assert info.value.permission and "needs root" in str(info.value)
    assert control.lowest_sm_clock_mhz(0) == 345
