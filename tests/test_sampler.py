"""TelemetrySampler: bounded ring buffers over hours, a trace without gaps or duplicates, the energy counter on its
own thread, counter vs sample integral, recovery after the source fails, and 1 Hz telemetry in the store."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time

import pytest

from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.telemetry.sampler import TelemetrySampler
from claw_tui.telemetry.types import GpuSnapshot, GpuStatic, PowerSample, TelemetryError
from tests.conftest import wait_until
from tests.test_sampler_replay import default_config

START = 1_800_000_000.0
PERIOD = 0.02


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class SyntheticSource:
    """A GPU whose power is a known function of time, sampled every 20 ms, with a matching energy counter.

    `fail` makes every call raise (a lost GPU); `resend` makes each call also return the previous batch again
    (a driver that repeats samples); `skip` drops the samples of a time range (a hole in the driver's buffer).
    """

    kind = "synthetic"

    def __init__(self, clock, gpus: int = 1, watts=lambda t: 100.0) -> None:
        self.clock = clock
        self.gpus = gpus
        self.watts = watts
        self.fail = False
        self.resend = False
        self.skip: tuple[float, float] | None = None
        self.opened = 0
        self.counter_offset_j = 5_000.0
        self._counter_t = clock()
        self._counter_j = 0.0
        self._last_batch: dict[int, list[PowerSample]] = {}

    def open(self) -> list[GpuStatic]:
        if self.fail:
            raise TelemetryError("NVML: the GPU is lost (GPU 0): it fell off the bus or hung; reopen when it returns")
        self.opened += 1
        return [
            GpuStatic(index=i, name=f"Synthetic {i}", power_limit_w=700.0, vram_total_mib=1000.0)
            for i in range(self.gpus)
        ]

    def _check(self) -> None:
        if self.fail:
            raise TelemetryError("NVML: the GPU is lost (GPU 0): it fell off the bus or hung; reopen when it returns")

    def snapshot(self, index: int) -> GpuSnapshot:
        self._check()
        return GpuSnapshot(
            index=index,
            name=f"Synthetic {index}",
            ts=self.clock(),
            power_w=self.watts(self.clock()),
            power_limit_w=700.0,
            sm_clock_mhz=1980,
            mem_clock_mhz=3201,
            util_pct=50.0,
            temp_c=40.0,
            vram_used_mib=100.0,
            vram_total_mib=1000.0,
        )

    def power_samples(self, index: int, since_ts: float) -> list[PowerSample]:
        self._check()
        now = self.clock()
        first = max(since_ts, now - 2.4)
        k = int(first / PERIOD) + 1
        out = []
        while k * PERIOD <= now:
            t = k * PERIOD
            if not (self.skip and self.skip[0] <= t < self.skip[1]):
                out.append(PowerSample(t, self.watts(t)))
            k += 1
        batch = (self._last_batch.get(index, []) + out) if self.resend else out
        self._last_batch[index] = out
        return batch

    def energy_counter_j(self, index: int) -> float | None:
        self._check()
        now = self.clock()
        self._counter_j += self.energy_between(self._counter_t, now)
        self._counter_t = now
        return self.counter_offset_j + self._counter_j

    def energy_between(self, t0: float, t1: float) -> float:
        """The exact energy for the piecewise-constant power of these tests (midpoint rule at 5 ms)."""
        if t1 <= t0:
            return 0.0
        steps = max(1, round((t1 - t0) / 0.005))
        dt = (t1 - t0) / steps
        return sum(self.watts(t0 + (i + 0.5) * dt) for i in range(steps)) * dt

    def close(self) -> None:
        pass


def stepped(sampler: TelemetrySampler, clock: FakeClock, seconds: float, step: float = 0.25) -> None:
    for _ in range(round(seconds / step)):
        clock.now += step
        sampler.tick()


def new_sampler(clock, source=None, **kwargs) -> TelemetrySampler:
    sampler = TelemetrySampler(source or SyntheticSource(clock), clock=clock, **kwargs)
    sampler._open_source()  # what start() does, without the threads: the test drives the sampler
    return sampler


# ----- bounded memory -----------------------------------------------------------------------------------------------


def test_hours_of_samples_keep_the_buffers_at_their_bounds():
    clock = FakeClock()
    source = SyntheticSource(clock)
    sampler = new_sampler(clock, source, history_minutes=2.0, history_hours_1hz=1.0)
    capacity = sampler.buffer_capacity()
    assert capacity == {"power": 2 * 60 * 50, "recent": 2 * 60 * 4, "hourly": 3600}
    stepped(sampler, clock, 2.5 * 3600, step=1.0)  # two and a half hours of 50 Hz samples
    assert sampler.buffer_lengths(0) == capacity
    trace = sampler.power_trace(0)
    assert len(trace) == capacity["power"]
    assert trace[-1].ts == pytest.approx(clock.now, abs=PERIOD)
    assert trace[0].ts == pytest.approx(clock.now - 120 + PERIOD, abs=PERIOD)  # exactly the last two minutes
    hourly = sampler.history_1hz(0)
    assert hourly[-1].ts - hourly[0].ts == pytest.approx(3599, abs=1)
    assert sampler.trace_stats(0)["samples"] == pytest.approx(2.5 * 3600 * 50, abs=60)
    # The running integral still covers everything, although the ring only holds two minutes.
    assert sampler.integral_j(0) == pytest.approx(100.0 * 2.5 * 3600, rel=1e-4)


def test_default_buffers_are_minutes_at_full_rate_and_hours_at_1hz():
    sampler = TelemetrySampler(None)
    assert sampler.buffer_capacity() == {"power": 10 * 60 * 50, "recent": 10 * 60 * 4, "hourly": 6 * 3600}


# ----- the trace: no gaps, no duplicates ----------------------------------------------------------------------------


def test_trace_has_every_20ms_sample_once_even_when_the_driver_repeats_them():
    clock = FakeClock()
    source = SyntheticSource(clock)
    source.resend = True
    sampler = new_sampler(clock, source)
    stepped(sampler, clock, 30.0)
    trace = sampler.power_trace(0)
    times = [s.ts for s in trace]
    assert times == sorted(set(times))
    assert all(abs((b - a) - PERIOD) < 1e-6 for a, b in itertools.pairwise(times))
    stats = sampler.trace_stats(0)
    assert stats["gaps"] == 0 and stats["dropped_duplicates"] > 0
    assert stats["rate_hz"] == pytest.approx(50.0) and stats["median_dt_s"] == pytest.approx(PERIOD)


def test_a_hole_in_the_samples_is_counted_as_a_gap():
    clock = FakeClock()
    source = SyntheticSource(clock)
    sampler = new_sampler(clock, source)
    source.skip = (clock.now + 2.0, clock.now + 2.5)
    stepped(sampler, clock, 5.0)
    stats = sampler.trace_stats(0)
    assert stats["gaps"] == 1
    assert stats["max_gap_s"] == pytest.approx(0.52, abs=0.021)


# ----- the energy counter: its own thread, at most 2 Hz, aligned with the samples ------------------------------------


class SlowCounterSource(SyntheticSource):
    """The counter read blocks until released: power polls must go on meanwhile."""

    def __init__(self, clock) -> None:
        super().__init__(clock)
        self.release = threading.Event()
        self.counter_calls = 0

    def energy_counter_j(self, index: int) -> float | None:
        self.counter_calls += 1
        if self.counter_calls > 1:  # the first read (at open) is immediate
            self.release.wait(5)
        return super().energy_counter_j(index)


def test_a_slow_energy_counter_does_not_stall_power_polling():
    source = SlowCounterSource(time.time)
    sampler = TelemetrySampler(source, poll_interval_s=0.02, energy_interval_s=0.5)
    sampler.start()
    try:
        wait_until(lambda: source.counter_calls >= 2, timeout=5)  # the energy thread is now stuck in the call
        polls, samples = sampler.polls, sampler.trace_stats(0)["samples"]
        # polling goes on while the counter read hangs (~25 polls of 20 ms in half a second)
        wait_until(lambda: sampler.polls >= polls + 10, timeout=5)
        wait_until(lambda: sampler.trace_stats(0)["samples"] > samples, timeout=5)
        assert sampler.state == "ok"
    finally:
        source.release.set()
        sampler.stop()


def test_energy_counter_is_read_at_most_twice_a_second():
    clock = FakeClock()
    source = SyntheticSource(clock)
    calls = []
    read = source.energy_counter_j
    source.energy_counter_j = lambda index: calls.append(clock()) or read(index)
    sampler = new_sampler(clock, source, poll_interval_s=0.01, energy_interval_s=0.05)
    assert sampler.energy_interval_s == 0.5
    calls.clear()  # opening the source reads the counter once
    stepped(sampler, clock, 1.3, step=0.01)  # 130 polls of 10 ms
    assert 2 <= len(calls) <= 3
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(calls))


def test_counter_and_sample_integral_agree_over_the_same_window():
    clock = FakeClock()
    # Idle, a load of 600 W for 10 s, idle again: the counter is the exact integral of the same power.
    source = SyntheticSource(clock, watts=lambda t: 600.0 if START + 5 < t < START + 15 else 80.0)
    sampler = new_sampler(clock, source, energy_interval_s=1.0)
    stepped(sampler, clock, 25.0)
    check = sampler.energy_check(0)
    assert check["readings"] >= 20
    assert abs(check["error_pct"]) < 0.5
    # counter_energy_j covers the whole sampled window, which is what the ledger integrates too
    assert sampler.counter_energy_j(0) == pytest.approx(sampler.integral_j(0), rel=0.005)
    expected = source.energy_between(START + PERIOD, clock.now)  # samples start one period after the open
    assert sampler.integral_j(0) == pytest.approx(expected, rel=0.005)


def test_a_counter_that_restarts_after_a_driver_reload_is_not_a_negative_energy():
    clock = FakeClock()
    source = SyntheticSource(clock, watts=lambda t: 200.0)
    sampler = new_sampler(clock, source)
    stepped(sampler, clock, 10.0)
    source.counter_offset_j = -source.energy_counter_j(0) + 10.0  # the counter starts over near zero
    stepped(sampler, clock, 10.0)
    assert sampler.counter_delta_j(0) > 0
    assert sampler.counter_energy_j(0) == pytest.approx(sampler.integral_j(0), rel=0.01)
    assert sampler.integral_j(0) == pytest.approx(200.0 * 20.0, rel=0.01)


# ----- failure and recovery ------------------------------------------------------------------------------------------


def test_sampler_reports_a_lost_gpu_then_recovers_and_announces_the_gpus_again():
    clock = FakeClock()
    source = SyntheticSource(clock, gpus=2)
    announced: list[list[int]] = []
    sampler = TelemetrySampler(source, clock=clock)
    sampler.add_gpus_listener(lambda statics: announced.append([s.index for s in statics]))
    sampler._open_source()
    stepped(sampler, clock, 2.0)
    source.fail = True
    stepped(sampler, clock, 1.0)
    assert sampler.state == "error" and "GPU is lost" in sampler.message
    stepped(sampler, clock, 3.0)  # still failing: reopen attempts every 5 s never crash anything
    source.fail = False
    stepped(sampler, clock, 6.0)
    assert sampler.state == "ok" and sampler.message == ""
    assert announced == [[0, 1], [], [0, 1]]
    assert sampler.recoveries == 1
    samples_before = sampler.trace_stats(1)["samples"]
    stepped(sampler, clock, 1.0)
    assert sampler.trace_stats(1)["samples"] == samples_before + 50


def test_session_meters_energy_again_after_telemetry_recovers(tmp_path):
    clock = FakeClock()
    source = SyntheticSource(clock, watts=lambda t: 300.0)
    config = default_config()
    config.telemetry.poll_interval_s = 3600  # the test drives the sampler
    options = SessionOptions(
        demo=True, listen=("127.0.0.1", 0), store_path=tmp_path / "s.db", clock=clock, telemetry_source=source
    )
    runner = SessionThread(Session(config, options))
    runner.start()
    try:
        session = runner.session
        ledger, sampler = session.ledger, session.sampler
        assert ledger.metering and ledger.expected_gpus == {0}
        # A request in flight when the GPU is lost keeps what it was given and finishes without waiting forever.
        record = ledger.open_request(model="m", endpoint="/api/chat")
        ledger.mark_upstream_start(record, gpu=0)
        stepped(sampler, clock, 2.0)
        source.fail = True
        stepped(sampler, clock, 0.5)
        assert not ledger.metering
        alerts = session.summary_json()["alerts"]["active"]
        assert [a["kind"] for a in alerts] == ["telemetry"] and "GPU is lost" in alerts[0]["message"]
        ledger.finish(record, "ok", 200)
        assert record.energy_final and record.energy_j == pytest.approx(300.0 * 2.0, rel=0.05)
        source.fail = False
        stepped(sampler, clock, 6.0)
        assert ledger.metering and ledger.expected_gpus == {0}
        assert session.status_json()["telemetry"]["state"] == "ok"
        assert session.summary_json()["alerts"]["active"] == []
        # A request after the recovery is metered again.
        again = ledger.open_request(model="m", endpoint="/api/chat")
        ledger.mark_upstream_start(again, gpu=0)
        stepped(sampler, clock, 1.0)
        ledger.finish(again, "ok", 200)
        stepped(sampler, clock, 0.5)
        assert again.energy_final and again.energy_j == pytest.approx(300.0, rel=0.1)
    finally:
        runner.stop()


def test_a_source_that_raises_anything_never_kills_the_sampler():
    clock = FakeClock()
    source = SyntheticSource(clock)
    sampler = new_sampler(clock, source)

    def broken(index, since_ts):
        raise ZeroDivisionError("driver bug")

    source.power_samples = broken
    stepped(sampler, clock, 0.5)
    assert sampler.state == "error" and "driver bug" in sampler.message


# ----- 1 Hz telemetry in the session store ----------------------------------------------------------------------------


def test_1hz_telemetry_is_persisted_to_the_session_store(tmp_path):
    clock = FakeClock()
    source = SyntheticSource(clock, watts=lambda t: 250.0)
    config = default_config()
    config.telemetry.poll_interval_s = 3600
    db = tmp_path / "s.db"
    options = SessionOptions(demo=True, listen=("127.0.0.1", 0), store_path=db, clock=clock, telemetry_source=source)
    runner = SessionThread(Session(config, options))
    runner.start()
    session_id = runner.session.id
    stepped(runner.session.sampler, clock, 10.0)
    runner.stop()  # the store flushes on stop
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT ts, gpu, power_w, energy_j, sm_clock_mhz, temp_c FROM telemetry WHERE session_id = ? ORDER BY ts",
            (session_id,),
        ).fetchall()
    assert 10 <= len(rows) <= 11
    times = [r[0] for r in rows]
    assert all(0.99 <= b - a <= 1.01 for a, b in itertools.pairwise(times))
    assert all(r[1] == 0 and r[2] == 250.0 and r[4] == 1980 and r[5] == 40.0 for r in rows)
    assert rows[-1][3] > rows[0][3]  # the energy counter rises


def test_history_points_fill_at_4hz_so_clock_charts_are_never_blank():
    clock = FakeClock()
    sampler = new_sampler(clock)
    stepped(sampler, clock, 3.0)
    recent = sampler.recent_history(0)
    assert len(recent) == 1 + 12  # the poll at open, then 4 a second (the 1 Hz history has only 3 points)
    assert len(sampler.history_1hz(0)) == 3
    assert all(p.sm_clock_mhz == 1980 for p in recent)
    # the 1 Hz point's power is the mean of that second's samples
    assert sampler.history_1hz(0)[-1].power_w == pytest.approx(100.0)


def test_many_gpus_stretch_the_costly_reads_without_losing_samples():
    clock = FakeClock()
    source = SyntheticSource(clock, gpus=8)
    counter_reads = []
    read = source.energy_counter_j
    source.energy_counter_j = lambda index: counter_reads.append(index) or read(index)
    sampler = new_sampler(clock, source)
    assert sampler.samples_interval_s == 1.0 and sampler.counter_interval_s == 4.0
    counter_reads.clear()
    stepped(sampler, clock, 20.0)
    assert len(counter_reads) == 8 * 5  # every GPU every 4 s
    for index in range(8):
        stats = sampler.trace_stats(index)
        assert stats["gaps"] == 0 and stats["samples"] == 20 * 50
    assert len(sampler.recent_history(7)) > 70  # snapshots still at the poll rate
    one = new_sampler(clock, SyntheticSource(clock))
    assert one.samples_interval_s == 0.25 and one.counter_interval_s == 1.0
