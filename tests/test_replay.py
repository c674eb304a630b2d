"""Traces: the real H200 fixtures, ReplaySource (looping, fake clock), record_trace, and broken files."""

from __future__ import annotations

import gzip
import itertools
import json
import statistics
from pathlib import Path

import pytest

from claw_tui.telemetry.replay import (
    ReplaySource,
    load_trace,
    record_trace,
    summarize_trace,
    trapezoid_energy_j,
    write_trace,
)
from claw_tui.telemetry.types import GpuSnapshot, GpuStatic, PowerSample, TelemetryError

TRACES = Path(__file__).parent / "fixtures" / "traces"
IDLE = TRACES / "h200_idle_no_context.jsonl.gz"
BURST = TRACES / "h200_decode_burst.jsonl.gz"
RESIDENT = TRACES / "h200_idle_resident.jsonl.gz"
POWER_CAP = TRACES / "h200_power_cap.jsonl.gz"
ALL_FIXTURES = (IDLE, BURST, RESIDENT, POWER_CAP)
ORIGIN = 1_800_000_000.0


class FakeClock:
    def __init__(self, t: float = ORIGIN):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def window_mean_w(samples: list[tuple[float, float]], t0: float, t1: float) -> float:
    return trapezoid_energy_j(samples, t0, t1) / (t1 - t0)


# ----- the recorded H200 traces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_fixture_is_a_small_real_h200_trace(path):
    assert path.stat().st_size < 300_000
    trace = load_trace(path)
    [static] = trace.statics
    assert static.name == "NVIDIA H200"
    assert static.power_limit_w == 700.0 and static.vram_total_mib == 143771.0
    assert len(static.supported_sm_clocks_mhz) == 110
    assert trace.header["source"] == "nvml"
    assert 12.9 < trace.duration_s < 30


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_fixture_samples_are_20ms_apart_without_duplicates(path):
    [stats] = summarize_trace(load_trace(path))
    assert 0.0195 < stats.median_dt_s < 0.0205
    assert stats.duplicates == 0
    assert stats.max_gap_s < 0.1  # the driver skips a beat under load, never 100 ms
    assert stats.samples >= 0.95 * stats.duration_s / 0.02


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_fixture_energy_counter_matches_sample_integral_within_1pct(path):
    [stats] = summarize_trace(load_trace(path))
    assert stats.counter_delta_j > 0
    assert abs(stats.counter_error_pct) < 1.0


def test_idle_levels_no_context_vs_resident_context():
    idle = summarize_trace(load_trace(IDLE))[0].mean_power_w
    resident = summarize_trace(load_trace(RESIDENT))[0].mean_power_w
    assert 70 < idle < 90
    assert 110 < resident < 135  # the "parking" cost of a resident CUDA context: ~40 W
    idle_snap = load_trace(IDLE).snapshots[0][0][1]
    assert idle_snap["sm_clock_mhz"] == 345 and idle_snap["clock_event_reasons"] == ["gpu_idle"]


def test_decode_burst_shape_follows_its_marks():
    trace = load_trace(BURST)
    marks = {label: t for t, label in trace.marks}
    start, end = marks["load_start"], marks["load_end"]
    samples = trace.power[0]
    assert window_mean_w(samples, 0.5, start - 0.5) < 135
    assert window_mean_w(samples, start + 0.5, end) > 400
    assert window_mean_w(samples, end + 2.0, trace.duration_s - 0.1) < 135
    busy = [s for t, s in trace.snapshots[0] if start + 0.5 < t < marks["request1_end"]]
    assert busy and all(s["util_pct"] > 90 for s in busy)
    assert busy[0]["processes"][0]["vram_mib"] > 16_000


def test_power_cap_trace_shows_the_limit_at_work():
    trace = load_trace(POWER_CAP)
    marks = {label: t for t, label in trace.marks}
    capped = [s for t, s in trace.snapshots[0] if marks["load_start"] + 0.5 < t < marks["load_end"]]
    assert capped and all(s["clock_event_reasons"] == ["sw_power_cap"] for s in capped)
    assert all(s["sm_clock_mhz"] < trace.statics[0].max_sm_clock_mhz for s in capped)
    load_w = window_mean_w(trace.power[0], marks["load_start"] + 1.0, marks["load_end"])
    assert 640 < load_w < 720  # held at the 700 W limit on average
    assert max(w for _, w in trace.power[0]) > 700  # single 20 ms samples overshoot it
    # The driver keeps the sw_power_cap flag for up to ~0.75 s after the load stops.
    after = [s for t, s in trace.snapshots[0] if t > marks["load_end"] + 1.0]
    assert after and all(s["clock_event_reasons"] == [] and s["sm_clock_mhz"] == 1980 for s in after)


# ----- replay on a fake clock -----------------------------------------------------------------------------------


def open_replay(path=BURST, **kwargs) -> tuple[ReplaySource, FakeClock]:
    clock = FakeClock()
    source = ReplaySource(path, clock=clock, **kwargs)
    source.open()
    return source, clock


def poll(source: ReplaySource, clock: FakeClock, seconds: float, step: float = 0.25) -> list[PowerSample]:
    out: list[PowerSample] = []
    since = 0.0
    for _ in range(round(seconds / step)):
        clock.sleep(step)
        batch = source.power_samples(0, since)
        if batch:
            since = batch[-1].ts
        out += batch
    return out


def test_replay_returns_the_recorded_samples_at_their_times():
    source, clock = open_replay()
    recorded = [(t, w) for t, w in load_trace(BURST).power[0]]
    got = poll(source, clock, 10.0)
    expected = [(ORIGIN + t, w) for t, w in recorded if ORIGIN + t <= clock.t]
    assert [(s.ts, s.watts) for s in got] == expected


def test_replay_loops_seamlessly():
    source, clock = open_replay()
    trace = source.trace
    got = poll(source, clock, 3 * trace.duration_s)
    stamps = [s.ts for s in got]
    dts = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(dts) > 0.005  # no duplicate and no overlap anywhere (the driver's own jitter goes down to ~8 ms)
    assert max(dts) < 0.1
    recorded = [t for t, _ in trace.power[0]]
    seam = ORIGIN + source.period_s + recorded[0]
    i = stamps.index(seam)
    median = statistics.median(b - a for a, b in itertools.pairwise(recorded))
    assert stamps[i] - stamps[i - 1] == pytest.approx(median, abs=1e-6)
    assert len(got) == pytest.approx(3 * len(trace.power[0]), abs=2)
    second_pass = [s for s in got if seam <= s.ts < seam + source.period_s]
    assert [s.watts for s in second_pass] == [w for _, w in trace.power[0]]


def test_energy_counter_keeps_rising_across_loops():
    source, clock = open_replay()
    duration = source.period_s
    readings = []
    for _ in range(int(3 * duration / 0.5)):
        readings.append(source.energy_counter_j(0))
        clock.sleep(0.5)
    assert all(b >= a for a, b in itertools.pairwise(readings))
    per_pass = readings[int(duration / 0.5)] - readings[0]
    [stats] = summarize_trace(source.trace)
    assert per_pass == pytest.approx(
        stats.counter_delta_j * duration / (source.trace.energy[0][-1][0] - source.trace.energy[0][0][0]), rel=0.02
    )
    # Within the recording the replayed counter is the recorded one.
    t, joules = source.trace.energy[0][10]
    clock.t = ORIGIN + t
    assert source.energy_counter_j(0) == pytest.approx(joules)


def test_replay_is_deterministic_under_a_fake_clock():
    def run() -> tuple:
        source, clock = open_replay()
        samples = poll(source, clock, 40.0, step=0.3)
        snaps = []
        for _ in range(20):
            clock.sleep(0.77)
            snaps.append(source.snapshot(0))
        return [(s.ts, s.watts) for s in samples], snaps, source.energy_counter_j(0)

    assert run() == run()


def test_start_ts_pins_the_origin():
    clock = FakeClock(ORIGIN + 100.0)
    source = ReplaySource(BURST, clock=clock, start_ts=ORIGIN)
    source.open()
    # 100 s after the origin: the trace (27 s) is in its fourth pass.
    snap = source.snapshot(0)
    assert ORIGIN + 3 * source.period_s <= snap.ts <= clock.t


def test_snapshots_follow_the_trace():
    source, clock = open_replay()
    marks = {label: t for t, label in source.trace.marks}
    clock.t = ORIGIN + 1.0
    idle = source.snapshot(0)
    clock.t = ORIGIN + marks["request1_decode"] + 1.0
    busy = source.snapshot(0)
    assert isinstance(busy, GpuSnapshot) and busy.name == "NVIDIA H200"
    assert idle.util_pct == 0.0 and idle.power_w < 135
    assert busy.util_pct > 90 and busy.power_w > 400
    assert busy.processes[0].name == "python3"
    assert ORIGIN + marks["request1_decode"] < busy.ts <= clock.t


def test_no_loop_stops_at_the_end():
    source, clock = open_replay(IDLE, loop=False)
    got = poll(source, clock, 2 * source.trace.duration_s)
    assert len(got) == len(source.trace.power[0])
    final = source.energy_counter_j(0)
    clock.sleep(10.0)
    assert source.power_samples(0, 0.0) == []
    assert source.energy_counter_j(0) == final


def test_a_late_reader_gets_only_the_driver_buffer():
    source, clock = open_replay(buffer_s=2.4)
    clock.sleep(10.0)
    got = source.power_samples(0, 0.0)
    assert got[0].ts > clock.t - 2.4
    assert 110 <= len(got) <= 121


def test_since_ts_is_strict_and_samples_come_once():
    source, clock = open_replay()
    clock.sleep(1.0)
    first = source.power_samples(0, 0.0)
    cut = first[10].ts
    assert source.power_samples(0, cut) == []  # already returned
    fresh, fresh_clock = open_replay()
    fresh_clock.sleep(1.0)
    assert fresh.power_samples(0, cut)[0].ts > cut


def test_replay_unknown_gpu_is_telemetry_error():
    source, _ = open_replay()
    with pytest.raises(TelemetryError, match="no GPU with index 3"):
        source.snapshot(3)


# ----- recording ------------------------------------------------------------------------------------------------


def test_record_from_replay_and_read_back(tmp_path):
    clock = FakeClock()
    source = ReplaySource(BURST, clock=clock)
    out = tmp_path / "copy.jsonl"
    progress = []
    stats = record_trace(
        source, out, 8.0, clock=clock, sleep=clock.sleep, on_progress=lambda done, total: progress.append(done)
    )
    copy = load_trace(out)
    original = load_trace(BURST)
    assert copy.header["source"] == "replay" and copy.statics == original.statics
    assert 8.0 <= copy.duration_s < 8.3
    # Every recorded sample in the first 8 s comes through, at the same relative time.
    expected = [(t, w) for t, w in original.power[0] if t <= copy.power[0][-1][0]]
    assert [(round(t, 5), w) for t, w in copy.power[0]] == [(round(t, 5), w) for t, w in expected]
    assert len(copy.snapshots[0]) == pytest.approx(8.0 * 4, abs=2)
    assert len(copy.energy[0]) == pytest.approx(8.0 * 2, abs=2)
    assert stats[0].samples == len(copy.power[0]) and abs(stats[0].counter_error_pct) < 1.0
    assert progress[-1] == 8.0 and progress == sorted(progress)


def test_record_gz_is_gzip(tmp_path):
    clock = FakeClock()
    out = tmp_path / "t.jsonl.gz"
    record_trace(ReplaySource(IDLE, clock=clock), out, 1.0, clock=clock, sleep=clock.sleep)
    with gzip.open(out, "rt") as f:
        assert json.loads(f.readline())["type"] == "header"


def test_ctrl_c_ends_the_recording_with_a_complete_trace(tmp_path):
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.t > ORIGIN + 2.0:
            raise KeyboardInterrupt

    out = tmp_path / "cut.jsonl"
    stats = record_trace(ReplaySource(IDLE, clock=clock), out, 10.0, clock=clock, sleep=sleep)
    assert 2.0 < load_trace(out).duration_s < 3.0
    assert stats[0].samples > 90


def test_write_trace_round_trip_keeps_marks(tmp_path):
    trace = load_trace(BURST)
    out = tmp_path / "again.jsonl.gz"
    write_trace(trace, out)
    again = load_trace(out)
    assert again.power == trace.power and again.energy == trace.energy
    assert again.snapshots == trace.snapshots and again.marks == trace.marks
    assert again.duration_s == trace.duration_s and again.statics == trace.statics


def test_trapezoid_energy():
    ramp = [(0.0, 100.0), (1.0, 200.0), (2.0, 200.0)]
    assert trapezoid_energy_j(ramp, 0.0, 2.0) == pytest.approx(350.0)
    assert trapezoid_energy_j(ramp, 0.5, 1.5) == pytest.approx(87.5 + 100.0)
    assert trapezoid_energy_j(ramp, 1.0, 1.0) == 0.0


# ----- broken files ---------------------------------------------------------------------------------------------

HEADER = {
    "type": "header",
    "version": 1,
    "source": "nvml",
    "host": "h",
    "recorded_at": 0.0,
    "gpus": [{"index": 0, "name": "NVIDIA H200"}],
}


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(TelemetryError) as caught:
        load_trace(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    with pytest.raises(TelemetryError):
        ReplaySource(path).open()


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.jsonl", "cannot read trace")


def test_empty_file(tmp_path):
    expect_error(write_lines(tmp_path / "e.jsonl", []), "empty")


def test_bad_json_names_the_line(tmp_path):
    path = write_lines(tmp_path / "b.jsonl", [HEADER, {"type": "energy", "gpu": 0, "t": 0.1, "j": 5.0}, "{oops"])
    expect_error(path, "line 3", "not valid JSON")


def test_not_a_trace(tmp_path):
    expect_error(write_lines(tmp_path / "n.jsonl", [{"type": "power", "gpu": 0}]), "line 1", "not a claw trace")
    expect_error(write_lines(tmp_path / "l.jsonl", ["[1, 2]"]), "line 1")


def test_wrong_version(tmp_path):
    expect_error(write_lines(tmp_path / "v.jsonl", [{**HEADER, "version": 2}]), "line 1", "version 2")


def test_missing_end_record_is_truncated(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [HEADER, {"type": "energy", "gpu": 0, "t": 0.1, "j": 5.0}])
    expect_error(path, "line 2", "truncated")


def test_bad_record_fields_name_the_line(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [HEADER, {"type": "power", "gpu": 0, "t": 0.1, "samples": [[0.1]]}])
    expect_error(path, "line 2", "bad power record")
    path = write_lines(tmp_path / "g.jsonl", [HEADER, {"type": "energy", "gpu": 5, "t": 0.1, "j": 1.0}])
    expect_error(path, "line 2", "GPU 5")


def test_truncated_gzip(tmp_path):
    data = BURST.read_bytes()
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "truncated")


def test_gz_name_on_plain_text(tmp_path):
    path = write_lines(tmp_path / "plain.jsonl.gz", [HEADER])
    expect_error(path, "line 1")


def test_unknown_record_types_are_skipped(tmp_path):
    path = write_lines(
        tmp_path / "u.jsonl",
        [
            HEADER,
            {"type": "power", "gpu": 0, "t": 0.1, "samples": [[0.02, 80.0], [0.04, 81.0]]},
            {"type": "future-thing", "x": 1},
            {"type": "end", "t": 1.0},
        ],
    )
    trace = load_trace(path)
    assert trace.power[0] == [(0.02, 80.0), (0.04, 81.0)]
    assert trace.statics == [GpuStatic(index=0, name="NVIDIA H200")]


def test_statistics_module_sanity():
    # The fixtures' spacing is what the NVML reference documents (20 ms).
    trace = load_trace(IDLE)
    times = [t for t, _ in trace.power[0]]
    assert statistics.median(b - a for a, b in itertools.pairwise(times)) == pytest.approx(0.02, abs=0.0005)


def test_two_gpu_trace_from_nvml_replays_each_gpu(tmp_path):
    from tests.test_nvml_source import FakeGpu, FakeNvml, make_source

    fake = FakeNvml([FakeGpu(watts=100.0), FakeGpu(name="NVIDIA H100", uuid="GPU-1", watts=300.0)])
    fake.now_us = int(ORIGIN * 1e6)
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        fake.advance(seconds)
        fake.now_us = round(clock.t * 1e6)

    out = tmp_path / "two.jsonl.gz"
    stats = record_trace(make_source(fake), out, 3.0, clock=clock, sleep=sleep)
    assert [s.gpu for s in stats] == [0, 1]
    assert [round(s.mean_power_w) for s in stats] == [100, 300]
    assert all(abs(s.counter_error_pct) < 1.0 for s in stats)
    replay, rclock = open_replay(out)
    rclock.sleep(2 * replay.period_s)
    assert {s.watts for s in replay.power_samples(1, 0.0)} == {300.0}
    assert replay.snapshot(1).name == "NVIDIA H100" and replay.snapshot(0).power_w == 100.0
