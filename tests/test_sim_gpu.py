"""The simulated GPU: power levels, lag, clocks, the 20 ms sample grid and the energy counter."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from claw_tui.sim.gpu import SAMPLE_PERIOD_S, SimGPU, SimTelemetrySource
from claw_tui.telemetry.types import TelemetryError

T0 = 1_800_000_000.0  # a grid-aligned epoch time


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gpu(clock: FakeClock) -> SimGPU:
    return SimGPU(seed=3, clock=clock)


def settle(gpu: SimGPU, clock: FakeClock, seconds: float = 3.0) -> float:
    clock.advance(seconds)
    return gpu.power_now()


# ---- power levels -----------------------------------------------------------------------------------------------


def test_idle_without_context_draws_about_77_watts(gpu, clock):
    power = settle(gpu, clock)
    assert 74 <= power <= 82
    snap = gpu.snapshot()
    assert snap.clock_event_reasons == ["gpu_idle"]
    assert snap.sm_clock_mhz == 345
    assert snap.pstate == "P8"
    assert snap.util_pct == 0


def test_a_resident_model_adds_parking_power_once(gpu, clock):
    idle = settle(gpu, clock)
    gpu.load_model("qwen3:8b", 6000)
    parked = settle(gpu, clock)
    assert 30 <= parked - idle <= 50
    gpu.load_model("llama3.2:3b", 3000)
    assert abs(settle(gpu, clock) - parked) < 5  # parking is per context, not per model
    snap = gpu.snapshot()
    assert snap.sm_clock_mhz == 1980
    assert snap.pstate == "P0"


def test_decode_power_saturates_towards_the_limit(gpu, clock):
    gpu.load_model("m", 20000)
    parked = settle(gpu, clock)
    one = gpu.begin_work("decode")
    single = settle(gpu, clock)
    assert 250 <= single - parked <= 350
    others = [gpu.begin_work("decode") for _ in range(7)]
    many = settle(gpu, clock)
    assert many >= 650
    assert many <= 700 + 15  # the ripple may poke a few watts over, as the real card does
    assert "sw_power_cap" in gpu.snapshot().clock_event_reasons
    for handle in [one, *others]:
        gpu.end_work(handle)
    assert abs(settle(gpu, clock) - parked) < 5


def test_prefill_draws_more_than_decode(gpu, clock):
    gpu.load_model("m", 20000)
    handle = gpu.begin_work("prefill")
    prefill = settle(gpu, clock)
    gpu.set_phase(handle, "decode")
    decode = settle(gpu, clock)
    assert prefill > decode + 100


def test_power_follows_work_within_tens_of_milliseconds_like_h200_samples(gpu, clock):
    """On the H200, 20 ms samples cross the midpoint of a step 7–39 ms after work starts or stops."""
    gpu.load_model("m", 20000)
    parked = settle(gpu, clock)
    handle = gpu.begin_work("decode")
    clock.advance(0.005)
    early = gpu.power_now()
    clock.advance(0.035)
    past_midpoint = gpu.power_now()
    loaded = settle(gpu, clock)
    assert early < parked + 0.5 * (loaded - parked)
    assert past_midpoint > parked + 0.5 * (loaded - parked)

    gpu.end_work(handle)
    clock.advance(0.005)
    assert gpu.power_now() > parked + 0.5 * (loaded - parked)
    clock.advance(0.04)
    assert gpu.power_now() < parked + 0.5 * (loaded - parked)
    clock.advance(0.5)
    assert abs(gpu.power_now() - parked) < 10


def test_end_work_is_idempotent_and_unknown_phase_rejected(gpu):
    handle = gpu.begin_work("decode")
    gpu.end_work(handle)
    gpu.end_work(handle)
    assert gpu.work_in_flight() == 0
    with pytest.raises(ValueError):
        gpu.begin_work("training")


# ---- clocks -------------------------------------------------------------------------------------------------------


def test_locked_low_clock_lowers_power_and_slows_decode_less_than_linearly(gpu, clock):
    gpu.load_model("m", 20000)
    parked = settle(gpu, clock)
    handle = gpu.begin_work("decode")
    full = settle(gpu, clock)
    assert gpu.decode_speed_factor() == pytest.approx(1.0)

    assert gpu.lock_sm_clock(990) == 990
    assert gpu.locked_sm_clock() == 990
    half = settle(gpu, clock)
    assert half < full - 100
    assert 0.85 <= gpu.decode_speed_factor() <= 0.90
    assert gpu.prefill_speed_factor() == pytest.approx(0.5)
    assert gpu.snapshot().clock_event_reasons == ["app_clocks"]
    assert gpu.current_sm_clock() == 990

    gpu.end_work(handle)
    assert settle(gpu, clock) < parked  # locked clocks also lower the parking cost
    gpu.reset_clocks()
    assert gpu.locked_sm_clock() is None
    assert abs(settle(gpu, clock) - parked) < 5


def test_lock_snaps_to_a_supported_clock_and_rejects_out_of_range(gpu):
    assert gpu.lock_sm_clock(1000) == 1005
    with pytest.raises(ValueError):
        gpu.lock_sm_clock(100)
    with pytest.raises(ValueError):
        gpu.lock_sm_clock(2500)


def test_static_facts(gpu):
    static = gpu.static()
    clocks = static.supported_sm_clocks_mhz
    assert len(clocks) == 110
    assert clocks[0] == 1980 and clocks[-1] == 345
    assert list(clocks) == sorted(clocks, reverse=True)
    assert static.max_sm_clock_mhz == 1980
    assert static.max_mem_clock_mhz == 3201
    assert static.driver == "sim"
    assert static.uuid.startswith("GPU-")
    assert static.power_limit_w == 700.0


# ---- telemetry -----------------------------------------------------------------------------------------------------


def test_snapshot_reports_memory_processes_and_warming(gpu, clock):
    gpu.load_model("qwen3:32b", 22000)
    gpu.load_model("qwen3:8b", 9000)
    snap = gpu.snapshot()
    assert snap.vram_used_mib == pytest.approx(500 + 22000 + 9000)
    assert snap.vram_total_mib == 143771
    assert snap.mem_clock_mhz == 3201
    assert {p.vram_mib for p in snap.processes} == {22000, 9000}
    assert all(p.is_ollama_runner and p.name == "ollama runner" for p in snap.processes)
    cool = snap.temp_c
    handles = [gpu.begin_work("decode") for _ in range(4)]
    for _ in range(30):
        clock.advance(2.0)
        hot = gpu.snapshot()
    assert hot.temp_c > cool + 10
    assert hot.util_pct > 90
    assert hot.to_json()["energy_j"] > 0
    gpu.unload_model("qwen3:32b")
    assert [p.vram_mib for p in gpu.snapshot().processes] == [9000]
    for handle in handles:
        gpu.end_work(handle)


def test_samples_lie_on_a_20ms_grid_without_gaps_or_duplicates(gpu, clock):
    gpu.load_model("m", 1000)
    collected = gpu.power_samples(clock.now - 0.001)
    handle = None
    for i, step in enumerate([0.137, 0.5, 0.013, 0.02, 0.0, 1.01, 0.333, 0.04, 2.0, 0.019]):
        clock.advance(step)
        if i == 3:
            handle = gpu.begin_work("prefill")
        if i == 6:
            gpu.end_work(handle)
        collected += gpu.power_samples(collected[-1].ts)
    stamps = [s.ts for s in collected]
    assert all(b - a == pytest.approx(SAMPLE_PERIOD_S, abs=1e-6) for a, b in itertools.pairwise(stamps))
    assert all(abs(ts / SAMPLE_PERIOD_S - round(ts / SAMPLE_PERIOD_S)) < 1e-4 for ts in stamps)
    assert stamps[-1] <= clock.now


def test_rereading_a_period_gives_the_same_values(gpu, clock):
    gpu.load_model("m", 1000)
    start = clock.now
    clock.advance(0.3)
    handle = gpu.begin_work("decode")
    clock.advance(0.4)
    first = gpu.power_samples(start)
    clock.advance(0.5)
    gpu.end_work(handle)
    clock.advance(0.2)
    again = gpu.power_samples(start)
    assert again[: len(first)] == first


def test_sample_buffer_holds_about_2_4_seconds(gpu, clock):
    clock.advance(30)
    samples = gpu.power_samples(0)
    assert 110 <= len(samples) <= 120
    assert samples[-1].ts <= clock.now
    assert samples[0].ts >= clock.now - 2.4


def test_energy_counter_matches_the_trapezoid_of_samples(clock):
    gpu = SimGPU(seed=11, clock=clock)
    start = clock.now
    samples = gpu.power_samples(start - 0.001)
    counter_start = gpu.energy_counter_j()

    def run(seconds: float) -> None:
        nonlocal samples
        for _ in range(round(seconds / 0.5)):
            clock.advance(0.5)
            samples += gpu.power_samples(samples[-1].ts)

    run(2.0)  # idle
    gpu.load_model("qwen3:32b", 40000)
    load = gpu.begin_work("load")
    run(1.0)
    gpu.end_work(load)
    handles = [gpu.begin_work("prefill") for _ in range(2)]
    run(1.0)
    for handle in handles:
        gpu.set_phase(handle, "decode")
    handles += [gpu.begin_work("decode") for _ in range(3)]
    run(4.0)
    for handle in handles:
        gpu.end_work(handle)
    run(3.0)  # parked, falling
    gpu.unload_model("qwen3:32b")
    run(4.0)  # idle again

    assert samples[0].ts == pytest.approx(start) and samples[-1].ts == pytest.approx(clock.now)
    trapezoid = sum((a.watts + b.watts) / 2 * (b.ts - a.ts) for a, b in itertools.pairwise(samples))
    counter = gpu.energy_counter_j() - counter_start
    assert counter > 2000
    assert abs(trapezoid - counter) / counter < 0.005


def test_energy_counter_never_decreases_and_memory_stays_bounded(gpu, clock):
    last = gpu.energy_counter_j()
    for i in range(5000):
        handle = gpu.begin_work("decode" if i % 2 else "prefill")
        clock.advance(0.013)
        gpu.end_work(handle)
        clock.advance(0.007)
        counter = gpu.energy_counter_j()
        assert counter >= last
        last = counter
    assert len(gpu._segments) < 400


def test_same_seed_same_trace_different_seed_different_trace():
    traces = []
    for seed in (5, 5, 6):
        clock = FakeClock()
        gpu = SimGPU(seed=seed, clock=clock)
        gpu.load_model("m", 1000)
        clock.advance(1.0)
        traces.append([s.watts for s in gpu.power_samples(0)])
    assert traces[0] == traces[1]
    assert traces[0] != traces[2]


def test_concurrent_use_from_threads_is_safe():
    gpu = SimGPU(seed=1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(60):
                handle = gpu.begin_work("decode")
                gpu.power_samples(time.time() - 0.1)
                gpu.set_phase(handle, "prefill")
                gpu.snapshot()
                gpu.end_work(handle)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert gpu.work_in_flight() == 0


def test_telemetry_source_over_several_gpus(clock):
    gpus = [SimGPU(index=0, seed=1, clock=clock), SimGPU(index=1, seed=1, clock=clock)]
    source = SimTelemetrySource(gpus)
    assert source.kind == "sim"
    statics = source.open()
    assert [s.index for s in statics] == [0, 1]
    assert statics[0].uuid != statics[1].uuid
    gpus[1].load_model("m", 5000)
    clock.advance(1.0)
    assert source.snapshot(1).vram_used_mib == pytest.approx(5500)
    assert source.snapshot(0).vram_used_mib == pytest.approx(500)
    assert source.power_samples(0, clock.now - 0.1)
    assert source.energy_counter_j(1) > source.energy_counter_j(0)
    with pytest.raises(TelemetryError):
        source.snapshot(7)
    source.close()
