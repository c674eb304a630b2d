"""The energy ledger: attribution by real work (waits claim nothing), the buckets (requests, load, unmetered, idle),
conservation, finality, model operations, parking."""

from __future__ import annotations

import random
from dataclasses import dataclass

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


@dataclass
class Util:
    index: int
    ts: float
    util_pct: float


def samples(start: float, end: float, watts, step: float = 0.02) -> list[PowerSample]:
    n = round((end - start) / step)
    return [PowerSample(start + i * step, watts(start + i * step) if callable(watts) else watts) for i in range(n + 1)]


def buckets(ledger: Ledger) -> float:
    t = ledger.totals()
    return t["active_j"] + t["load_j"] + t["unmetered_j"] + t["idle_j"] + t["pending_j"]


def stream(ledger, clock, *, start, prefill_end, end, tokens, prompt_tokens=20, timed=True, load_s=None, model="m"):
    """A streamed Ollama request: upstream at `start`, first token at `prefill_end`, one chunk per token to `end`."""
    clock.now = start
    record = ledger.open_request(model=model, endpoint="/api/chat")
    ledger.mark_upstream_start(record, gpu=0)
    return record, {
        "prefill_end": prefill_end,
        "end": end,
        "tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "timed": timed,
        "load_s": load_s,
    }


def play(ledger, clock, record, plan, *, prompt_eval_s=None, status="ok"):
    start = record.t_upstream_start
    clock.now = plan["prefill_end"]
    ledger.mark_first_token(record)
    ledger.progress(record, 1)
    n = plan["tokens"]
    for i in range(2, n + 1):
        clock.now = plan["prefill_end"] + (plan["end"] - plan["prefill_end"]) * (i - 1) / (n - 1)
        ledger.progress(record, i)
    clock.now = plan["end"]
    record.prompt_tokens = plan["prompt_tokens"]
    if plan["timed"]:
        wait = prompt_eval_s if prompt_eval_s is not None else 0.2
        record.server_prompt_eval_ms = wait * 1000
        record.server_eval_ms = (plan["end"] - plan["prefill_end"]) * 1000
        record.server_load_ms = (plan["load_s"] or 0.002) * 1000
        record.server_total_ms = (plan["end"] - start) * 1000
    ledger.finish(record, status, 200)


def test_idle_energy_goes_to_the_idle_bucket():
    ledger = Ledger(lag_s=0)
    ledger.add_power(0, samples(0, 10, 100.0))
    totals = ledger.totals()
    assert totals["total_j"] == pytest.approx(1000.0)
    assert totals["idle_j"] == pytest.approx(1000.0)
    assert totals["active_j"] == totals["load_j"] == totals["unmetered_j"] == pytest.approx(0.0)
    assert totals["idle_s"] == pytest.approx(10.0)


def test_whole_answer_without_timings_is_spread_over_its_window_split_at_first_token():
    clock = FakeClock(2.0)
    ledger = Ledger(lag_s=0, clock=clock)
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record)
    clock.now = 3.0
    ledger.mark_first_token(record)
    clock.now = 6.0
    ledger.finish(record, "ok", 200)
    ledger.add_power(0, samples(0, 10, lambda t: 300.0 if 2 <= t <= 6 else 100.0))
    assert record.energy_final and record.attribution == "window"
    assert record.energy_j == pytest.approx(4 * 300, rel=0.01)
    assert record.prefill_j == pytest.approx(300, rel=0.03)
    assert record.decode_j == pytest.approx(900, rel=0.02)
    assert buckets(ledger) == pytest.approx(ledger.totals()["total_j"])


def test_time_waiting_for_a_slot_claims_nothing():
    """Ollama's timings place the prefill just before the first token: the wait before it is charged nothing."""
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    record, plan = stream(ledger, clock, start=0.0, prefill_end=5.0, end=8.0, tokens=60)
    play(ledger, clock, record, plan, prompt_eval_s=1.0)
    ledger.add_power(0, samples(0, 10, lambda t: 400.0 if 4 <= t <= 8 else 100.0))
    assert record.attribution == "timed"
    assert record.prefill_j == pytest.approx(400, rel=0.02)
    assert record.decode_j == pytest.approx(1200, rel=0.02)
    assert record.energy_j == pytest.approx(1600, rel=0.02)
    assert ledger.totals()["idle_j"] == pytest.approx(400 + 200, rel=0.03)


def test_identical_requests_queued_on_a_serial_backend_get_the_same_energy():
    """The issue's case: four requests arrive together, the backend computes them one after another."""
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    plans = []
    for i in range(4):
        plans.append(stream(ledger, clock, start=0.0, prefill_end=2.0 * i + 0.3, end=2.0 * i + 2.0, tokens=50))
    for record, plan in plans:
        play(ledger, clock, record, plan, prompt_eval_s=0.3)
    ledger.add_power(0, samples(0, 9, lambda t: 450.0 if t < 8 else 80.0))
    energies = [r.energy_j for r, _ in plans]
    assert all(r.energy_final for r, _ in plans)
    assert max(energies) / min(energies) < 1.03
    assert sum(energies) == pytest.approx(8 * 450, rel=0.01)


def test_requests_decoding_together_share_by_tokens():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    fast, fast_plan = stream(ledger, clock, start=0.0, prefill_end=0.01, end=4.0, tokens=300, timed=False)
    slow, slow_plan = stream(ledger, clock, start=0.0, prefill_end=0.01, end=4.0, tokens=100, timed=False)
    play(ledger, clock, fast, fast_plan)
    play(ledger, clock, slow, slow_plan)
    ledger.add_power(0, samples(0, 5, lambda t: 500.0 if t <= 4 else 80.0))
    assert fast.attribution == slow.attribution == "tokens"
    assert fast.decode_j / slow.decode_j == pytest.approx(3.0, rel=0.05)
    assert fast.energy_j + slow.energy_j == pytest.approx(2000, rel=0.01)


def test_a_model_load_goes_to_the_load_bucket_and_shows_on_the_request():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    record, plan = stream(ledger, clock, start=0.0, prefill_end=3.2, end=5.0, tokens=40, load_s=3.0)
    play(ledger, clock, record, plan, prompt_eval_s=0.2)
    ledger.add_power(0, samples(0, 6, lambda t: 150.0 if t < 3 else (400.0 if t <= 5 else 80.0)))
    assert record.load_j == pytest.approx(450, rel=0.02)
    assert record.energy_j == pytest.approx(2.0 * 400, rel=0.02)
    totals = ledger.totals()
    assert totals["load_j"] == pytest.approx(record.load_j)
    assert totals["active_j"] == pytest.approx(record.energy_j)
    assert record.tokens_per_joule == pytest.approx(40 / record.energy_j)
    assert ledger.models_json()["m:latest"]["load_count"] == 1


def test_a_load_duration_of_a_resident_model_takes_only_what_nobody_else_claimed():
    """Ollama's load_duration of a resident model is a wait for the scheduler: the other request keeps its energy."""
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    first, first_plan = stream(ledger, clock, start=0.0, prefill_end=0.2, end=3.0, tokens=50)
    clock.now = 0.0
    second = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(second, gpu=0, resident=True)
    second_plan = {"prefill_end": 3.2, "end": 5.0, "tokens": 40, "prompt_tokens": 20, "timed": True, "load_s": 3.0}
    play(ledger, clock, first, first_plan, prompt_eval_s=0.2)
    play(ledger, clock, second, second_plan, prompt_eval_s=0.2)
    ledger.add_power(0, samples(0, 6, lambda t: 400.0 if t <= 5 else 80.0))
    assert first.energy_j == pytest.approx(3 * 400, rel=0.02)
    assert second.load_j == pytest.approx(0, abs=1.0)
    assert second.energy_j == pytest.approx(2 * 400, rel=0.02)


def test_work_outside_the_gateway_is_unmetered_not_idle():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    ledger.add_utilization([Util(0, t, 0.0) for t in range(1, 11)])
    ledger.add_power(0, samples(0, 10, 80.0))  # learns the idle level
    ledger.add_utilization([Util(0, t, 100.0) for t in range(11, 16)])
    ledger.add_power(0, samples(10.02, 15, 690.0))
    totals = ledger.totals()
    assert totals["unmetered_j"] == pytest.approx(690 * 5, rel=0.01)
    assert totals["idle_j"] == pytest.approx(800, rel=0.01)
    assert totals["unmetered_s"] == pytest.approx(5, rel=0.01)


def test_power_far_above_the_idle_level_is_unmetered_even_without_utilisation():
    ledger = Ledger(lag_s=0)
    ledger.add_power(0, samples(0, 10, 80.0))
    ledger.add_power(0, samples(10.02, 12, 500.0))
    assert ledger.totals()["unmetered_j"] == pytest.approx(1000, rel=0.02)


def test_a_cancelled_stream_keeps_its_tokens_and_energy():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    record, plan = stream(ledger, clock, start=0.0, prefill_end=0.5, end=2.5, tokens=80, timed=False)
    play(ledger, clock, record, plan, status="cancelled")
    ledger.add_power(0, samples(0, 4, lambda t: 400.0 if t <= 2.5 else 80.0))
    assert record.status == "cancelled" and record.completion_tokens == 80
    assert record.energy_j == pytest.approx(2.5 * 400, rel=0.02)
    assert record.joules_per_token == pytest.approx(record.energy_j / 80)


def test_a_request_that_failed_before_any_output_takes_only_unclaimed_energy():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    working, plan = stream(ledger, clock, start=0.0, prefill_end=0.2, end=2.0, tokens=30)
    clock.now = 0.0
    waiting = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(waiting, gpu=0)
    play(ledger, clock, working, plan, prompt_eval_s=0.2)
    clock.now = 3.0
    ledger.finish(waiting, "cancelled", 499)
    ledger.add_power(0, samples(0, 4, lambda t: 400.0 if t <= 2 else 100.0))
    assert working.energy_j == pytest.approx(800, rel=0.02)
    assert waiting.attribution == "window"
    assert waiting.energy_j == pytest.approx(100, rel=0.05)  # 2–3 s: nobody else worked


def test_model_operations_are_kept_apart_and_their_energy_is_load():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    load = ledger.open_request(model="m", endpoint="/api/generate", kind="load")
    ledger.mark_upstream_start(load, gpu=0)
    clock.now = 2.0
    load.server_load_ms = 2000
    load.server_total_ms = 2000
    ledger.finish(load, "ok", 200)
    ledger.add_power(0, samples(0, 3, lambda t: 200.0 if t < 2 else 120.0))
    assert ledger.records() == [] and ledger.model_events() == [load]
    assert load.load_j == pytest.approx(400, rel=0.02) and load.energy_j == pytest.approx(load.load_j)
    assert ledger.totals()["load_j"] == pytest.approx(400, rel=0.02)
    assert ledger.totals()["active_j"] == 0
    with pytest.raises(ValueError):
        ledger.open_request(model="m", endpoint="/x", kind="nonsense")


def test_an_unload_is_load_energy_but_not_counted_as_a_load():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    unload = ledger.open_request(model="m", endpoint="/api/generate", kind="unload")
    ledger.mark_upstream_start(unload, gpu=0)
    clock.now = 1.5
    ledger.finish(unload, "ok", 200)
    ledger.add_power(0, samples(0, 3, lambda t: 200.0 if t < 1.5 else 80.0))
    assert unload.energy_final and unload.load_j == pytest.approx(300, rel=0.02)
    assert ledger.totals()["load_j"] == pytest.approx(300, rel=0.02)
    assert ledger.models_json().get("m:latest", {"load_count": 0})["load_count"] == 0


def test_parking_is_the_power_above_the_baseline_while_resident_and_unused():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0, clock=clock)
    ledger.set_resident(0, [], ts=0.0)
    ledger.add_power(0, samples(0, 10, 77.0))  # nothing resident: the baseline
    ledger.set_resident(0, ["qwen3:8b"], ts=10.0)
    ledger.add_power(0, samples(10.02, 130, 118.0))
    models = ledger.models_json()
    parked = models["qwen3:8b"]
    assert parked["parking_s"] == pytest.approx(120, rel=0.01)
    assert parked["parking_j"] == pytest.approx(41 * 120, rel=0.02)
    after = {row["minutes"]: row for row in parked["unload_after"]}
    assert after[1]["saved_j"] == pytest.approx(41 * 60, rel=0.03)
    assert after[5]["saved_j"] == 0 and after[1]["reloads"] == 0
    assert ledger.idle_baselines() == {0: pytest.approx(77.0)}


def test_parking_without_a_measured_baseline_is_unknown():
    ledger = Ledger(lag_s=0)
    ledger.set_resident(0, ["m"], ts=0.0)
    ledger.add_power(0, samples(0, 10, 118.0))
    assert ledger.models_json()["m:latest"]["parking_j"] is None


def test_energy_is_pending_while_a_request_is_in_flight_and_final_once_samples_pass_its_end():
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=0.25, clock=clock)
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record)
    ledger.add_power(0, samples(0, 0.5, 100.0))
    assert ledger.totals()["pending_j"] == pytest.approx(25, rel=0.1) and buckets(ledger) == pytest.approx(
        ledger.totals()["total_j"]
    )
    clock.now = 1.0
    ledger.finish(record, "ok")
    ledger.add_power(0, samples(0.52, 1.1, 100.0))
    assert not record.energy_final
    finalized, events = [], []
    ledger.add_finalized_listener(finalized.append)
    ledger.add_event_listener(events.append)
    ledger.add_power(0, samples(1.12, 1.5, 100.0))
    assert record.energy_final and finalized == [record]
    assert [e.kind for e in events] == ["request.finished"] and events[0].data["energy_final"]
    assert record.energy_j == pytest.approx(100.0, rel=0.03)
    assert ledger.totals()["pending_j"] == pytest.approx(0, abs=1e-9)


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
    spans=st.lists(
        st.tuples(st.floats(0, 9), st.floats(0.01, 5), st.floats(0, 1), st.integers(0, 40), st.booleans()),
        min_size=0,
        max_size=12,
    ),
    seed=st.integers(0, 2**16),
    lag=st.sampled_from([0.0, 0.25]),
)
def test_conservation_holds_for_any_request_pattern(spans, seed, lag):
    """Σ requests + load + unmetered + idle (+ pending) = total integrated energy, whatever the requests did."""
    rng = random.Random(seed)
    clock = FakeClock(0.0)
    ledger = Ledger(lag_s=lag, clock=clock)
    ledger.set_resident(0, ["m"], ts=0.0)
    records = []
    for start, length, frac, tokens, timed in sorted(spans):
        clock.now = start
        record = ledger.open_request(model="m", endpoint="/api/chat")
        ledger.mark_upstream_start(record, gpu=rng.choice([None, 0]), resident=rng.choice([None, True, False]))
        records.append((record, start, length, frac, tokens, timed))
    trace = samples(0, 15, lambda t: 80 + 400 * rng.random())
    ledger.add_power(0, trace[:100])  # some energy arrives while requests are in flight
    for record, start, length, frac, tokens, timed in records:
        first = start + length * frac
        if tokens:
            clock.now = first
            ledger.mark_first_token(record)
            for i in range(1, tokens + 1):
                ledger.progress(record, i, at=first + (start + length - first) * i / tokens)
        if timed:
            record.server_load_ms = rng.uniform(0, 1000 * length)
            record.server_prompt_eval_ms = rng.uniform(0, 1000 * length)
            record.server_eval_ms = rng.uniform(0, 1000 * length)
        clock.now = start + length
        ledger.finish(record, rng.choice(["ok", "ok", "error", "cancelled"]))
    for i in range(100, len(trace), 37):  # delivered in uneven batches, like a sampler
        ledger.add_power(0, trace[i : i + 37])
    ledger.finalize_without_power()
    totals = ledger.totals()
    attributed = sum(r.energy_j for r, *_ in records)
    loads = sum(r.load_j for r, *_ in records)
    assert totals["pending_j"] == pytest.approx(0, abs=1e-6)
    assert attributed == pytest.approx(totals["active_j"], rel=1e-9, abs=1e-6)
    assert loads == pytest.approx(totals["load_j"], rel=1e-9, abs=1e-6)
    assert attributed + loads + totals["unmetered_j"] + totals["idle_j"] == pytest.approx(
        totals["total_j"], rel=1e-9, abs=1e-6
    )
    assert all(r.prefill_j + r.decode_j == pytest.approx(r.energy_j, abs=1e-9) for r, *_ in records)
    assert all(r.energy_final for r, *_ in records)


def test_without_telemetry_records_finish_final_with_no_energy():
    ledger = Ledger()
    ledger.set_gpus([])
    record = ledger.open_request(model="m", endpoint="/api/chat")
    ledger.mark_upstream_start(record)
    ledger.finish(record, "ok")
    assert record.energy_final and record.energy_j == 0


def test_in_flight_counts_open_records_whatever_the_ring_holds():
    ledger = Ledger(max_records=3)
    done = [ledger.open_request(model="m", endpoint="/api/chat") for _ in range(5)]  # two already left the ring
    load = ledger.open_request(model="m", endpoint="", kind="load")
    assert ledger.in_flight() == 6
    for record in done[:4]:
        ledger.finish(record, "ok", 200)
    ledger.finish(done[0], "error", 500)  # a second finish changes nothing
    assert ledger.in_flight() == 2
    ledger.finish(load, "ok", 200)
    ledger.finish(done[4], "cancelled")
    assert ledger.in_flight() == 0
