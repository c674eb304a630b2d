"""Energy attribution: conservation, sharing among concurrent requests, the prefill/decode split, finality."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claw_tui.ledger import Ledger
from claw_tui.telemetry.types import PowerSample


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(start: float, end: float, watts, step: float = 0.02) -> list[PowerSample]:
    n = round((end - start) / step)
    return [PowerSample(start + i * step, watts(start + i * step) if callable(watts) else watts) for i in range(n + 1)]


def test_idle_energy_goes_to_the_idle_bucket():
    ledger = Ledger(lag_s=0)
    ledger.add_power(0, samples(0, 10, 100.0))
    totals = ledger.totals()
    assert totals["total_j"] == pytest.approx(1000.0)
    assert totals["idle_j"] == pytest.approx(1000.0)
    assert totals["active_j"] == pytest.approx(0.0)
    assert totals["idle_s"] == pytest.approx(10.0)


def test_single_request_gets_the_energy_of_its_window_split_at_first_token():
    clock = FakeClock(2.0)
    ledger = Ledger(lag_s=0, clock=clock)
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record)
    clock.now = 3.0
    ledger.mark_first_token(record)
    clock.now = 6.0
    ledger.finish(record, "ok", 200)
    ledger.add_power(0, samples(0, 10, lambda t: 300.0 if 2 <= t <= 6 else 100.0))
    assert record.energy_final
    assert record.energy_j == pytest.approx(4 * 300, rel=0.01)
    assert record.prefill_j == pytest.approx(300, rel=0.02)
    assert record.decode_j == pytest.approx(900, rel=0.01)
    totals = ledger.totals()
    assert totals["idle_j"] + record.energy_j == pytest.approx(totals["total_j"])


def test_concurrent_requests_share_an_interval_by_overlap():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    a = ledger.open_request(model="a", endpoint="/api/chat")
    ledger.mark_upstream_start(a)
    clock.now = 1.0
    b = ledger.open_request(model="b", endpoint="/api/chat")
    ledger.mark_upstream_start(b)
    clock.now = 2.0
    ledger.finish(a, "ok")
    ledger.finish(b, "ok")
    ledger.add_power(0, samples(0, 2, 200.0))
    # 0–1 s: a alone (200 J); 1–2 s: a and b share 200 J.
    assert a.energy_j == pytest.approx(300, rel=0.01)
    assert b.energy_j == pytest.approx(100, rel=0.02)


def test_energy_is_not_final_until_samples_cover_the_lagged_window():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0.25, clock=clock)
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record)
    clock.now = 1.0
    ledger.finish(record, "ok")
    ledger.add_power(0, samples(0, 1.1, 100.0))
    assert not record.energy_final
    finalized = []
    ledger.add_finalized_listener(finalized.append)
    ledger.add_power(0, samples(1.12, 1.5, 100.0))
    assert record.energy_final and finalized == [record]
    assert record.energy_j == pytest.approx(100.0, rel=0.03)


def test_request_on_another_gpu_takes_nothing_from_this_one():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    ledger.set_gpus([0, 1])
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record, gpu=1)
    clock.now = 1.0
    ledger.finish(record, "ok")
    ledger.add_power(0, samples(0, 1, 100.0))
    ledger.add_power(1, samples(0, 1, 50.0))
    assert record.energy_j == pytest.approx(50.0, rel=0.01)
    assert ledger.energy_by_gpu()[0].idle_j == pytest.approx(100.0)


def test_unknown_status_is_refused():
    ledger = Ledger()
    record = ledger.open_request(model="m", endpoint="/api/chat")
    with pytest.raises(ValueError):
        ledger.finish(record, "weird")


@settings(max_examples=60, deadline=None)
@given(
    spans=st.lists(st.tuples(st.floats(0, 9), st.floats(0.01, 5), st.floats(0, 1)), min_size=0, max_size=12),
    seed=st.integers(0, 2**16),
    lag=st.sampled_from([0.0, 0.25]),
)
def test_conservation_holds_for_any_request_pattern(spans, seed, lag):
    """Σ request energy + idle energy = total integrated energy, whatever the requests did."""
    rng = random.Random(seed)
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=lag, clock=clock)
    events = []
    for start, length, first_token_frac in spans:
        events.append((start, "start", length, first_token_frac))
    records = []
    for start, _, length, frac in sorted(events):
        clock.now = start
        record = ledger.open_request(model="m", endpoint="/api/chat")
        ledger.mark_upstream_start(record, gpu=rng.choice([None, 0]))
        records.append((record, start, length, frac))
    for record, start, length, frac in records:
        clock.now = start + length * frac
        ledger.mark_first_token(record)
        clock.now = start + length
        ledger.finish(record, "ok")
    trace = samples(0, 15, lambda t: 80 + 400 * rng.random())
    for i in range(0, len(trace), 37):  # delivered in uneven batches, like a sampler
        ledger.add_power(0, trace[i : i + 37])
    totals = ledger.totals()
    attributed = sum(r.energy_j for r, *_ in records)
    assert attributed + totals["idle_j"] == pytest.approx(totals["total_j"], rel=1e-9, abs=1e-9)
    assert all(r.prefill_j + r.decode_j == pytest.approx(r.energy_j, abs=1e-9) for r, *_ in records)


def test_without_telemetry_records_finish_final_with_no_energy():
    ledger = Ledger()
    ledger.set_gpus([])
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record)
    ledger.finish(record, "ok")
    assert record.energy_final and record.energy_j == 0
