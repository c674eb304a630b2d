"""How batch lines are drained: interactive traffic first, the completion window, expiry, the governor, webhooks."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from claw_tui.batch.webhook import deliver, verify
from tests.conftest import demo_config, start_demo_session, wait_until
from tests.test_batch_api import chat_line, client_for, jsonl, wait_for_end

INTERACTIVE_STALL_S = 1.5


def submit(client: openai.OpenAI, count: int, window: str = "24h", max_tokens: int = 12, **kwargs):
    upload = client.files.create(
        file=("b.jsonl", io.BytesIO(jsonl([chat_line(i, max_tokens=max_tokens) for i in range(count)]))),
        purpose="batch",
    )
    return client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window=window, **kwargs
    )


def hold_slots(session, count: int = 2) -> list[threading.Thread]:
    """Interactive requests that stall before their first token: each holds one of the backend's two slots."""
    session.run_on_loop(_stall(session, INTERACTIVE_STALL_S, count))
    url = session.gateway_url + "/api/chat"
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    threads = [
        threading.Thread(target=httpx.post, args=(url,), kwargs={"json": body, "timeout": 30}) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: session.gateway.active >= count)
    return threads


async def _stall(session, seconds: float, requests: int) -> None:
    session.sim.state.stall_next(seconds, requests=requests)


def records(session, client: str | None = None) -> list[dict]:
    rows = httpx.get(session.gateway_url + "/claw/v1/requests?limit=1000").json()["requests"]
    return [r for r in rows if client is None or (r["client"] == "batch") == (client == "batch")]


@pytest.fixture
def session(tmp_path):
    runner = start_demo_session(tmp_path)
    try:
        yield runner.session
    finally:
        runner.stop()


def test_no_batch_line_starts_while_interactive_work_holds_the_slots(session):
    client = client_for(session)
    threads = hold_slots(session)
    batch = submit(client, 6)
    for thread in threads:
        thread.join()
    done = wait_for_end(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 6
    interactive = [r for r in records(session) if r["client"] != "batch" and r["kind"] == "request"]
    batch_lines = records(session, "batch")
    assert len(interactive) == 2 and len(batch_lines) == 6
    last_interactive_end = max(r["times"]["end"] for r in interactive)
    assert all(r["times"]["arrival"] >= last_interactive_end - 0.05 for r in batch_lines), (
        "a batch line started while interactive requests held every slot"
    )
    # Batch lines filled the two slots: some ran side by side.
    spans = sorted((r["times"]["upstream_start"], r["times"]["end"]) for r in batch_lines)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_no_batch_line_runs_beside_an_interactive_request(session):
    client = client_for(session)
    threads = hold_slots(session, 1)  # one slot stays free: still no batch line may start
    batch = submit(client, 4)
    for thread in threads:
        thread.join()
    done = wait_for_end(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 4
    interactive = next(r for r in records(session) if r["client"] != "batch" and r["kind"] == "request")
    batch_lines = records(session, "batch")
    assert len(batch_lines) == 4
    assert min(r["times"]["arrival"] for r in batch_lines) >= interactive["times"]["end"], (
        "a batch line started beside an interactive request"
    )


def test_a_job_that_would_miss_its_window_runs_regardless(session):
    client = client_for(session)
    threads = hold_slots(session)
    batch = submit(client, 2, window="3s")
    done = wait_for_end(client, batch.id)
    for thread in threads:
        thread.join()
    assert done.status == "completed"
    interactive_end = min(r["times"]["end"] for r in records(session) if r["client"] != "batch")
    assert min(r["times"]["arrival"] for r in records(session, "batch")) < interactive_end


def test_lines_not_run_by_the_end_of_the_window_expire(tmp_path):
    config = demo_config()
    config.batch.max_attempts = 100
    runner = start_demo_session(tmp_path, config)
    session = runner.session
    try:
        session.run_on_loop(_fail(session, 1000))
        client = client_for(session)
        batch = submit(client, 3, window="2s")
        done = wait_for_end(client, batch.id, timeout=20)
        assert done.status == "expired" and done.expired_at is not None and done.output_file_id is None
        errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert [e["custom_id"] for e in errors] == ["req-0", "req-1", "req-2"]
        assert {e["error"]["code"] for e in errors} == {"batch_expired"}
        assert done.request_counts.failed == 3
    finally:
        runner.stop()


async def _fail(session, count: int) -> None:
    session.sim.state.fail_next(count, status=500)


def test_preemption_frees_one_slot_for_an_interactive_request_before_it_is_forwarded(tmp_path):
    config = demo_config()
    config.batch.preempt = True
    runner = start_demo_session(tmp_path, config, sim_speed=1.0)
    session = runner.session
    try:
        client = client_for(session)
        batch = submit(client, 4, max_tokens=200)
        wait_until(lambda: session.batch.drain.running == 2 and session.sim.state.in_flight == 2, timeout=20)
        answer = httpx.post(
            session.gateway_url + "/api/generate",
            json={"model": "qwen3:8b", "prompt": "hi", "stream": False, "options": {"num_predict": 3}},
            timeout=30,
        )
        assert answer.status_code == 200
        interactive = next(r for r in records(session) if r["client"] != "batch" and r["kind"] == "request")
        assert interactive["ttft_ms"] < 1000  # a batch line decoding 200 tokens takes ~1.4 s: it did not wait for it
        # Just one of the two lines yielded; the other decoded on beside the interactive request.
        assert session.batch.drain.preempted == 1
        start, end = interactive["times"]["arrival"], interactive["times"]["end"]
        lines = records(session, "batch")
        beside = [r for r in lines if r["times"]["upstream_start"] < start and (r["times"]["end"] or end + 1) > end]
        assert len(beside) == 1 and beside[0]["status"] in ("active", "ok")
        assert not [r for r in lines if start < r["times"]["arrival"] < end], "a batch line started meanwhile"
        done = wait_for_end(client, batch.id, timeout=60)
        assert done.status == "completed" and done.request_counts.completed == 4
        cancelled = [r for r in records(session, "batch") if r["status"] == "cancelled"]
        assert len(cancelled) == 1 and done.model_extra["claw"]["attempts"] == 5
    finally:
        runner.stop()


def test_the_governor_stays_up_while_batch_work_runs_and_downclocks_after(tmp_path):
    config = demo_config()
    config.governor.enabled = True
    config.governor.idle_after_s = 0.3
    runner = start_demo_session(tmp_path, config, sim_speed=2.0)
    session = runner.session
    try:
        wait_until(lambda: session.governor_json()["state"] == "downclocked", timeout=10)
        client = client_for(session)
        batch = submit(client, 12, max_tokens=40)
        wait_until(lambda: session.governor_json()["state"] == "active", timeout=10)
        states = set()

        def lines_left() -> bool:  # the job's end waits for its energy to be final: the work itself ends first
            counts = client.batches.retrieve(batch.id).request_counts
            return counts.completed + counts.failed < counts.total

        while lines_left():
            states.add(session.governor_json()["state"])
        assert states == {"active"}, f"the governor left 'active' while batch work ran: {states}"
        wait_until(lambda: session.governor_json()["state"] == "downclocked", timeout=10)
    finally:
        runner.stop()


class Receiver(BaseHTTPRequestHandler):
    calls: list[dict] = []
    failures_left = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append({"headers": dict(self.headers), "body": body})
        status = 500 if type(self).failures_left > 0 else 204
        type(self).failures_left -= 1
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_webhook_is_signed_and_retried_until_delivered(tmp_path):
    Receiver.calls, Receiver.failures_left = [], 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = demo_config()
    config.batch.webhook_secret = "s3cret"
    config.batch.webhook_backoff_s = 0.05
    runner = start_demo_session(tmp_path, config)
    try:
        client = client_for(runner.session)
        hook = f"http://127.0.0.1:{server.server_address[1]}/done"
        batch = submit(client, 2, metadata={"webhook_url": hook})
        wait_until(lambda: len(Receiver.calls) == 2, timeout=30)
        final = wait_until(
            lambda: (
                (b := client.batches.retrieve(batch.id)).model_extra["claw"]["webhook"]["state"] == "delivered" and b
            )
        )
        assert final.model_extra["claw"]["webhook"]["tries"] == 2
        call = Receiver.calls[-1]
        headers = {k.lower(): v for k, v in call["headers"].items()}
        assert headers["x-claw-event"] == "batch.completed"
        assert verify("s3cret", headers["x-claw-timestamp"], call["body"], headers["x-claw-signature"])
        assert not verify("wrong", headers["x-claw-timestamp"], call["body"], headers["x-claw-signature"])
        payload = json.loads(call["body"])
        assert payload["type"] == "batch.completed" and payload["data"]["id"] == batch.id
        assert payload["data"]["claw"]["energy_final"] and payload["data"]["claw"]["energy_j"] > 0
    finally:
        runner.stop()
        server.shutdown()


def test_webhook_retries_back_off_exponentially_and_give_up():
    waits: list[float] = []
    statuses = iter([503, 502, 500])

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    transport = httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
    state = asyncio.run(
        deliver(
            "http://receiver/x",
            "batch.completed",
            {"id": "b"},
            secret="",
            tries=3,
            backoff_s=2.0,
            sleep=sleep,
            transport=transport,
        )
    )
    assert state["state"] == "failed" and state["tries"] == 3 and state["last_status"] == 500
    assert waits == [2.0, 4.0]

    refused = httpx.MockTransport(lambda request: httpx.Response(400))
    state = asyncio.run(
        deliver(
            "http://receiver/x",
            "batch.failed",
            {"id": "b"},
            secret="k",
            tries=5,
            backoff_s=1.0,
            sleep=sleep,
            transport=refused,
        )
    )
    assert state["state"] == "failed" and state["tries"] == 1  # a refusal is not tried again
