"""Energy that follows the real work, end to end through the demo: the simulated Ollama queues requests per slot
and reports Ollama's timings; the simulated GPU draws power for the work it really does."""

from __future__ import annotations

import threading

import httpx
import ollama
import openai
import pytest

from claw_tui.sim.server import SIM_TOKENS_OPTION
from tests.conftest import start_demo_session, wait_until

MODEL = "qwen3:8b"


@pytest.fixture
def real_time_demo(tmp_path):
    """The demo at real speed: requests last long enough for the 20 ms power samples to see their shape."""
    runner = start_demo_session(tmp_path, sim_speed=1.0)
    try:
        yield runner.session
    finally:
        runner.stop()


def final(session, ids: set[str], timeout: float = 20.0) -> dict:
    def done():
        session.refresh_telemetry()
        records = {r.id: r for r in session.ledger.records() if r.id in ids}
        return records if len(records) == len(ids) and all(r.energy_final for r in records.values()) else None

    return wait_until(done, timeout=timeout)


def summary(session) -> dict:
    return httpx.get(session.gateway_url + "/claw/v1/summary", timeout=30).json()


def test_identical_concurrent_requests_on_a_queueing_backend_get_the_same_joules_per_token(real_time_demo):
    session = real_time_demo
    client = ollama.Client(host=session.gateway_url)
    client.generate(model=MODEL, prompt="", keep_alive="10m")  # load first: the six measure decode alone
    ids: list[str] = []
    lock = threading.Lock()

    def chat() -> None:
        with httpx.stream(
            "POST",
            session.gateway_url + "/api/chat",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "explain the power limit of a GPU"}],
                "options": {"seed": 7, "temperature": 0, SIM_TOKENS_OPTION: 200},
            },
            timeout=60,
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                pass
            with lock:
                ids.append(response.headers["x-claw-request-id"])

    threads = [threading.Thread(target=chat) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = final(session, set(ids))
    assert session.sim.state.num_parallel == 2
    waits = sorted(r.server_wait_ms for r in records.values())
    assert waits[-1] > 500  # the last pair waited for two pairs before it: the queue was real
    per_token = [r.joules_per_token for r in records.values()]
    assert all(r.attribution == "timed" for r in records.values())
    assert len({r.completion_tokens for r in records.values()}) == 1  # the same work (thinking + 200 answer tokens)
    assert max(per_token) / min(per_token) <= 1.25, per_token
    assert all(r.load_j == 0 for r in records.values())


def test_a_cancelled_stream_keeps_the_tokens_it_relayed_and_its_energy(real_time_demo):
    session = real_time_demo
    body = {"model": MODEL, "messages": [{"role": "user", "content": "tell a long story"}]}
    body["options"] = {SIM_TOKENS_OPTION: 400}
    with httpx.stream("POST", session.gateway_url + "/api/chat", json=body, timeout=60) as response:
        request_id = response.headers["x-claw-request-id"]
        lines = response.iter_lines()
        received = [next(lines) for _ in range(40)]
    assert len(received) == 40
    record = final(session, {request_id})[request_id]
    assert record.status == "cancelled"
    assert record.completion_tokens >= 40
    assert record.energy_j > 0 and record.decode_j > 0
    assert record.joules_per_token == pytest.approx(record.energy_j / record.completion_tokens)
    listed = httpx.get(session.gateway_url + "/claw/v1/requests").json()["requests"]
    assert next(r for r in listed if r["id"] == request_id)["completion_tokens"] == record.completion_tokens


def test_loads_and_unloads_are_model_events_not_requests(real_time_demo):
    session = real_time_demo
    url = session.gateway_url
    client = ollama.Client(host=url)
    loaded = client.generate(model="llama3.2:3b", prompt="")
    assert loaded.done_reason == "load"
    client.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "hi"}], options={SIM_TOKENS_OPTION: 5})
    unloaded = client.generate(model="llama3.2:3b", prompt="", keep_alive=0)
    assert unloaded.done_reason == "unload"

    def events():
        session.refresh_telemetry()
        listed = httpx.get(url + "/claw/v1/model-events").json()["model_events"]
        return listed if len(listed) == 2 and all(e["energy_final"] for e in listed) else None

    listed = wait_until(events, timeout=20)
    assert [(e["kind"], e["model"], e["status"]) for e in listed] == [
        ("unload", "llama3.2:3b", "ok"),
        ("load", "llama3.2:3b", "ok"),
    ]
    load = listed[1]
    assert load["load_j"] > 0 and load["load_j"] == pytest.approx(load["energy_j"])
    requests = httpx.get(url + "/claw/v1/requests").json()["requests"]
    assert [r["endpoint"] for r in requests] == ["/api/chat"]  # the chat alone
    assert requests[0]["load_j"] == 0  # the model was resident: no load on the chat
    wait_until(lambda: all(r.energy_final for r in session.ledger.records()))
    totals = summary(session)
    assert totals["requests"]["total"] == 1
    assert totals["model_events"]["by_kind"] == {"load": 1, "unload": 1}
    row = next(r for r in totals["by_model"] if r["model"] == "llama3.2:3b")
    assert row["requests"]["total"] == 1 and row["load_count"] == 1
    assert row["load_j"] == pytest.approx(load["load_j"], rel=1e-3)
    assert totals["energy"]["load_j"] >= load["load_j"]
    metrics = httpx.get(url + "/metrics").text
    assert 'claw_model_events_total{kind="load",model="llama3.2:3b"} 1.0' in metrics
    assert 'claw_requests_total{agent="",model="llama3.2:3b",status="ok"} 1.0' in metrics


def test_a_first_request_that_loads_its_model_shows_the_load_apart_from_its_compute(real_time_demo):
    session = real_time_demo
    client = openai.OpenAI(base_url=session.gateway_url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.with_raw_response.create(
        model="llama3.2:3b", messages=[{"role": "user", "content": "hi"}]
    )
    request_id = answer.headers["x-claw-request-id"]
    record = final(session, {request_id})[request_id]
    assert record.model_resident is False
    assert record.server_load_ms > 1000  # the simulator reads the model in for ~2 s
    assert record.load_j > 100 and record.energy_j > 0
    assert record.load_j > 10 * record.energy_j  # the load dwarfs a short answer, and stays out of its J/token
    assert record.joules_per_token == pytest.approx(record.energy_j / record.completion_tokens)


def test_gpu_work_that_bypasses_the_gateway_is_unmetered_not_idle(real_time_demo):
    session = real_time_demo
    gpu = session.sim.gpus[0]
    before = summary(session)["energy"]
    start_counter = gpu.energy_counter_j()
    handle = gpu.begin_work("prefill")  # another process's work: no request through the gateway
    wait_until(lambda: gpu.energy_counter_j() - start_counter > 600, timeout=10)
    gpu.end_work(handle)
    burst = gpu.energy_counter_j() - start_counter
    session.refresh_telemetry()
    after = wait_until(
        lambda: (s := summary(session)["energy"])["unmetered_j"] - before["unmetered_j"] > 0.8 * burst and s
    )
    assert after["unmetered_j"] - before["unmetered_j"] == pytest.approx(burst, rel=0.2)
    assert after["idle_j"] - before["idle_j"] < 0.3 * burst
    assert after["unmetered_s"] > 0


def test_summary_names_every_bucket_and_they_add_up(real_time_demo):
    session = real_time_demo
    client = ollama.Client(host=session.gateway_url)
    client.chat(model=MODEL, messages=[{"role": "user", "content": "hello"}], options={SIM_TOKENS_OPTION: 20})
    wait_until(lambda: all(r.energy_final for r in session.ledger.records()), timeout=20)
    energy = summary(session)["energy"]
    parts = energy["requests_j"] + energy["load_j"] + energy["unmetered_j"] + energy["idle_j"] + energy["pending_j"]
    assert parts == pytest.approx(energy["total_j"], abs=0.01)
    assert energy["requests_j"] > 0 and energy["load_j"] > 0 and energy["idle_j"] > 0
    efficiency = summary(session)["efficiency"]
    assert efficiency["active_tokens_per_joule"] > efficiency["tokens_per_joule"] > 0
