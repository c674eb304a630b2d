"""Faults: a backend dying mid-stream or going down, clients going away, timeouts, 500 concurrent streams, and bad
input of every kind — each gets a clean answer, the ledger keeps what it measured, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp
import httpx
import pytest

from claw_tui.config import AgentConfig
from tests.conftest import wait_until
from tests.gateway_support import SimBackends, chat_body, gateway_config, post, start_gateway


@pytest.fixture
def one(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, retries=0)
        try:
            yield runner.session, sims
        finally:
            runner.stop()


def records(session):
    return session.ledger.records()


def record_of(session, response_or_id):
    request_id = response_or_id if isinstance(response_or_id, str) else response_or_id.headers["X-Claw-Request-Id"]

    def done():
        record = session.ledger.get(request_id)
        return record if record is not None and record.status != "active" else None

    return wait_until(done)


def newest_finished(session):
    return wait_until(lambda: records(session) and records(session)[-1].status != "active" and records(session)[-1])


# ---- a backend dying -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("surface", ["ollama", "openai"])
def test_backend_killed_mid_stream(one, surface):
    session, sims = one
    sims.call(lambda: sims.state(0).die_mid_stream_after(3))
    if surface == "ollama":
        with httpx.stream("POST", session.gateway_url + "/api/chat", json=chat_body("tell me a story")) as response:
            assert response.status_code == 200
            lines = [json.loads(line) for line in response.iter_lines() if line]
        assert all(line["message"]["content"] or line["message"].get("thinking") for line in lines[:3])
        assert "failed mid-stream" in lines[-1]["error"]
    else:
        body = chat_body("tell me a story", stream=True)
        with httpx.stream("POST", session.gateway_url + "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        assert json.loads(events[-1])["error"]["type"] == "api_error"
        assert "failed mid-stream" in json.loads(events[-1])["error"]["message"]
    record = record_of(session, response)
    assert record.status == "error" and record.http_status == 200
    assert record.completion_tokens == 3  # the partial answer is kept
    assert record.ttft_ms is not None and record.energy_j >= 0
    # the gateway keeps serving
    again = post(session.gateway_url, "/api/chat", chat_body("again", stream=False))
    assert again.status_code == 200 and again.json()["done"]


def test_backend_dying_before_the_first_byte_is_retried(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, retries=1)
        try:
            session = runner.session
            sims.call(lambda: sims.state(0).die_mid_stream_after(0))
            response = post(session.gateway_url, "/api/chat", chat_body("hi", stream=False))
            assert response.status_code == 200 and response.json()["message"]["content"]
            assert record_of(session, response).status == "ok"
            metrics = httpx.get(session.gateway_url + "/metrics").text
            assert 'claw_upstream_retries_total{backend="b0"} 1.0' in metrics
        finally:
            runner.stop()


def test_backend_down_moves_traffic_to_the_other_and_comes_back(tmp_path):
    with SimBackends([{}, {}]) as sims:
        runner = start_gateway(tmp_path, sims, retries=1)
        try:
            session = runner.session
            sims.stop_server(0)
            served = [post(session.gateway_url, "/api/chat", chat_body(f"q{i}", stream=False)) for i in range(6)]
            assert all(r.status_code == 200 for r in served)
            assert {r.headers["X-Claw-Backend"] for r in served[-3:]} == {"b1"}

            def state(name):
                backends = httpx.get(session.gateway_url + "/claw/v1/backends").json()["backends"]
                return next(b for b in backends if b["name"] == name)

            down = wait_until(lambda: state("b0")["state"] == "down" and state("b0"), timeout=10)
            assert "cannot connect" in down["last_error"] or "unreachable" in down["last_error"]
            assert state("b1")["state"] == "up"
            sims.start_server(0)
            wait_until(lambda: state("b0")["state"] == "up", timeout=10)
            backends = {
                post(session.gateway_url, "/api/chat", chat_body(f"r{i}", stream=False)).headers["X-Claw-Backend"]
                for i in range(8)
            }
            assert backends == {"b0", "b1"}
        finally:
            runner.stop()


def test_backend_down_falls_back_to_another_model(tmp_path):
    with SimBackends([{}, {}]) as sims:
        created = httpx.post(
            sims.url(0) + "/api/create", json={"model": "special", "from": "llama3.2:3b", "stream": False}
        )
        assert created.status_code == 200
        config = gateway_config(sims, retries=1, fallback_models={"special": "qwen3:8b"})
        runner = start_gateway(tmp_path, sims, config)
        try:
            session = runner.session
            first = post(session.gateway_url, "/api/chat", chat_body("hi", model="special", stream=False))
            assert first.headers["X-Claw-Model"] == "special:latest" or first.headers["X-Claw-Model"] == "special"
            assert "X-Claw-Model-Downgraded" not in first.headers
            sims.stop_server(0)
            response = post(session.gateway_url, "/api/chat", chat_body("hi", model="special", stream=False))
            assert response.status_code == 200
            assert response.headers["X-Claw-Model-Downgraded"] == "qwen3:8b"
            assert response.headers["X-Claw-Model"] == "qwen3:8b" and response.headers["X-Claw-Backend"] == "b1"
            record = record_of(session, response)
            assert record.downgraded_from == "special" and record.model == "qwen3:8b" and record.status == "ok"
        finally:
            runner.stop()


def test_only_backend_down_is_a_clean_502(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, retries=1)
        try:
            session = runner.session
            sims.stop_server(0)
            response = post(session.gateway_url, "/api/chat", chat_body("hi", stream=False))
            assert response.status_code == 502
            assert "unreachable" in response.json()["error"]
            assert response.headers["Retry-After"]
            oai = post(session.gateway_url, "/v1/chat/completions", chat_body("hi"))
            assert oai.status_code == 502 and oai.json()["error"]["type"] == "api_error"
            assert record_of(session, response).status == "error"
        finally:
            runner.stop()


# ---- clients going away ---------------------------------------------------------------------------------------


def _open_stream(url: str, path: str, body: dict):
    """Send a streamed request and return the open response (the caller closes it to go away)."""
    client = httpx.Client(timeout=30)
    request = client.build_request("POST", url + path, json=body)
    return client, client.send(request, stream=True)


@pytest.mark.parametrize("surface", ["ollama", "openai"])
def test_disconnect_while_waiting_for_the_first_token_cancels_upstream(one, surface):
    session, sims = one
    sims.call(lambda: sims.state(0).stall_next(10.0, after_chunks=0))
    path = "/api/chat" if surface == "ollama" else "/v1/chat/completions"
    body = chat_body("slow one", stream=True)
    started = time.monotonic()
    result: dict = {}

    def go():
        try:
            with httpx.Client(timeout=httpx.Timeout(30, read=0.5)) as client:
                client.post(session.gateway_url + path, json=body)
        except httpx.ReadTimeout:
            result["gone"] = time.monotonic()  # the client gives up and closes its connection

    go()
    record = newest_finished(session)
    assert record.status == "cancelled" and record.http_status == 499
    assert "before the first token" in record.error and record.t_first_token is None
    wait_until(lambda: sims.call(lambda: sims.state(0).in_flight) == 0, timeout=3)
    assert time.monotonic() - started < 5  # well before the 10 s stall would have ended
    assert all(b.in_flight == 0 for b in session.backends)


@pytest.mark.parametrize("surface", ["ollama", "openai"])
def test_disconnect_mid_stream_cancels_upstream(one, surface):
    session, sims = one
    path = "/api/chat" if surface == "ollama" else "/v1/chat/completions"
    body = chat_body(
        "a long answer please", stream=True, options={"num_predict": 5000, "sim_tokens": 5000}, max_tokens=5000
    )
    client, response = _open_stream(session.gateway_url, path, body)
    lines = response.iter_lines()
    for _ in range(3):
        next(lines)
    response.close()
    client.close()
    record = newest_finished(session)
    assert record.status == "cancelled" and "after the first token" in record.error
    assert record.t_first_token is not None
    wait_until(lambda: sims.call(lambda: sims.state(0).in_flight) == 0, timeout=3)
    assert session.ledger.in_flight() == 0


def test_disconnect_while_queued_leaves_the_queue(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, max_in_flight=1, queue_size=4, queue_timeout_s=20, retries=0)
        try:
            session = runner.session
            sims.call(lambda: sims.state(0).stall_next(2.0, after_chunks=0))
            first = threading.Thread(target=post, args=(session.gateway_url, "/api/chat", chat_body("first")))
            first.start()
            wait_until(lambda: session.backends[0].in_flight == 1)
            try:
                with httpx.Client(timeout=httpx.Timeout(30, read=0.3)) as client:
                    client.post(session.gateway_url + "/api/chat", json=chat_body("second"))
            except httpx.ReadTimeout:
                pass
            second = wait_until(lambda: next((r for r in records(session) if r.status == "cancelled"), None))
            assert second.t_upstream_start is None and "before the first token" in second.error
            assert session.backends[0].admission.waiting == 0
            first.join(10)
            assert records(session)[0].status == "ok"  # the one in flight was not disturbed
        finally:
            runner.stop()


# ---- timeouts -------------------------------------------------------------------------------------------------


def test_first_token_timeout_is_a_504(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, first_token_timeout_s=0.3, retries=0)
        try:
            session = runner.session
            sims.call(lambda: sims.state(0).stall_next(3.0, after_chunks=0))
            response = post(session.gateway_url, "/api/chat", chat_body("hi"))
            assert response.status_code == 504
            assert "no first token" in response.json()["error"]
            assert record_of(session, response).status == "error"
        finally:
            runner.stop()


def test_idle_timeout_between_chunks_ends_the_stream_with_an_error(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, idle_timeout_s=0.3, retries=0)
        try:
            session = runner.session
            sims.call(lambda: sims.state(0).stall_next(3.0, after_chunks=2))
            with httpx.stream("POST", session.gateway_url + "/api/chat", json=chat_body("hi")) as response:
                lines = [json.loads(line) for line in response.iter_lines() if line]
            assert len(lines) == 3 and "idle timeout" in lines[-1]["error"]
            record = record_of(session, response)
            assert record.status == "error" and record.completion_tokens == 2
        finally:
            runner.stop()


def test_total_timeout_ends_a_long_stream(tmp_path):
    with SimBackends([{"speed": 4.0}]) as sims:
        runner = start_gateway(tmp_path, sims, total_timeout_s=1.0, retries=0)
        try:
            session = runner.session
            warm = httpx.post(sims.url(0) + "/api/generate", json={"model": "llama3.2:3b"}, timeout=30)
            assert warm.json()["done_reason"] == "load"
            body = chat_body("long", model="llama3.2:3b", options={"sim_tokens": 5000})
            started = time.monotonic()
            with httpx.stream("POST", session.gateway_url + "/api/chat", json=body) as response:
                assert response.status_code == 200
                lines = [json.loads(line) for line in response.iter_lines() if line]
            assert 1.0 <= time.monotonic() - started < 10  # generous: CI machines are busy
            assert len(lines) > 10 and "total timeout" in lines[-1]["error"]
            assert record_of(session, response).status == "error"
        finally:
            runner.stop()


# ---- 500 concurrent streams ----------------------------------------------------------------------------------


def test_500_concurrent_streams_lose_and_reorder_nothing(tmp_path):
    n = 500
    with SimBackends([{"num_parallel": 512, "max_queue": 2048}]) as sims:
        runner = start_gateway(tmp_path, sims, max_in_flight=n, queue_size=n)
        try:
            session = runner.session

            def body(i: int, stream: bool) -> dict:
                return chat_body(
                    f"stream number {i}",
                    model="llama3.2:3b",
                    stream=stream,
                    options={"seed": 7, "temperature": 0, "sim_tokens": 24},
                )

            async def one(http: aiohttp.ClientSession, url: str, i: int, stream: bool):
                async with http.post(url + "/api/chat", json=body(i, stream)) as response:
                    assert response.status == 200
                    if not stream:
                        return (await response.json())["message"]["content"]
                    return [json.loads(line) for line in (await response.read()).splitlines() if line]

            async def run():
                connector = aiohttp.TCPConnector(limit=0)
                async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(120)) as http:
                    streams = await asyncio.gather(*(one(http, session.gateway_url, i, True) for i in range(n)))
                    expected = await asyncio.gather(*(one(http, sims.url(0), i, False) for i in range(n)))
                return streams, expected

            streams, expected = asyncio.run(run())
            for chunks, text in zip(streams, expected):
                *content, final = chunks
                assert final["done"] and final["eval_count"] == len(content) == 24
                assert "".join(c["message"]["content"] for c in content) == text
                # Go trims trailing zeros of the nanoseconds, so compare instants, not strings.
                stamps = [rfc3339_ns(c["created_at"]) for c in chunks]
                assert stamps == sorted(stamps)
            done = wait_until(
                lambda: len([r for r in records(session) if r.status == "ok"]) >= n and records(session), timeout=60
            )
            assert len([r for r in done if r.status == "ok"]) == n
            wait_until(lambda: all(b.in_flight == 0 for b in session.backends), timeout=30)
        finally:
            runner.stop()


# ---- bad input ------------------------------------------------------------------------------------------------

BAD_OLLAMA = [
    (b"{not json", 400, "invalid JSON body"),
    (b"", 400, "missing request body"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b'{"messages": []}', 400, "model is required"),
    (b'{"model": 42, "messages": []}', 400, "'model' must be a string"),
    (b'{"model": "qwen3:8b", "messages": "hi"}', 400, "'messages' must be an array"),
    (b'{"model": "qwen3:8b", "messages": [{"content": "x"}]}', 400, "role"),
    (b'{"model": "qwen3:8b", "messages": [], "stream": "yes"}', 400, "'stream' must be a boolean"),
    (b'{"model": "qwen3:8b", "messages": [], "options": [1]}', 400, "'options' must be an object"),
    (b'{"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]}', 404, "model 'nope:1b' not found"),
]


@pytest.mark.parametrize("payload, status, message", BAD_OLLAMA)
def test_bad_ollama_requests(one, payload, status, message):
    session, _ = one
    response = post(session.gateway_url, "/api/chat", payload)
    assert response.status_code == status
    assert message in response.json()["error"]


BAD_OPENAI = [
    (b"{oops", 400, "invalid JSON body"),
    (b'{"model": "qwen3:8b"}', 400, "'messages' is required"),
    (b'{"model": "qwen3:8b", "messages": []}', 400, "must not be empty"),
    (
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}',
        400,
        "'max_tokens' must be an integer",
    ),
    (
        b'{"model": "qwen3:8b", "messages": [{"role": "user", "content": "x"}], "temperature": true}',
        400,
        "'temperature' must be a number",
    ),
    (b'{"model": "nope:1b", "messages": [{"role": "user", "content": "x"}]}', 404, "not found"),
]


@pytest.mark.parametrize("payload, status, message", BAD_OPENAI)
def test_bad_openai_requests(one, payload, status, message):
    session, _ = one
    response = post(session.gateway_url, "/v1/chat/completions", payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_bad_embeddings_requests(one):
    session, _ = one
    assert post(session.gateway_url, "/api/embed", {"model": "nomic-embed-text", "input": 5}).status_code == 400
    response = post(session.gateway_url, "/v1/embeddings", {"model": "nomic-embed-text", "input": [1, 2]})
    assert response.status_code == 400 and "'input'" in response.json()["error"]["message"]


def test_huge_body_is_refused_and_nothing_is_lost(tmp_path):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path, sims, max_body_bytes=10_000)
        try:
            session = runner.session
            ok = post(session.gateway_url, "/api/chat", chat_body("before", stream=False))
            assert ok.status_code == 200
            before = [r.id for r in records(session)]
            huge = chat_body("x" * 20_000)
            response = post(session.gateway_url, "/api/chat", huge)
            assert response.status_code == 413 and "limit is 10000 bytes" in response.json()["error"]
            oai = post(session.gateway_url, "/v1/chat/completions", huge)
            assert oai.status_code == 413 and oai.json()["error"]["type"] == "invalid_request_error"

            def chunked():  # no Content-Length: the limit is counted as the body streams in
                yield json.dumps(huge).encode()

            streamed = httpx.post(session.gateway_url + "/api/chat", content=chunked())
            assert streamed.status_code == 413
            assert [r.id for r in records(session)][: len(before)] == before
            assert post(session.gateway_url, "/api/chat", chat_body("after", stream=False)).status_code == 200
        finally:
            runner.stop()


def test_unknown_endpoint_and_method(one):
    session, _ = one
    missing = httpx.get(session.gateway_url + "/api/nothing")
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["error"]
    wrong = httpx.get(session.gateway_url + "/api/chat")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    oai = httpx.get(session.gateway_url + "/v1/nothing")
    assert oai.status_code == 404 and oai.json()["error"]["type"] == "not_found_error"


def test_backend_errors_keep_their_status_and_message(one):
    session, sims = one
    sims.call(lambda: sims.state(0).fail_next(1, status=500, message="llama runner process has terminated"))
    response = post(session.gateway_url, "/api/chat", chat_body("hi"))
    assert response.status_code == 500
    assert response.json()["error"] == "llama runner process has terminated"
    sims.call(lambda: sims.state(0).fail_next(1, status=500, message="runner crashed"))
    oai = post(session.gateway_url, "/v1/chat/completions", chat_body("hi"))
    assert oai.status_code == 500 and oai.json()["error"]["message"] == "runner crashed"
    assert post(session.gateway_url, "/api/chat", chat_body("hi", stream=False)).status_code == 200


def test_agent_with_a_missing_model_falls_back(tmp_path):
    with SimBackends([{}]) as sims:
        agents = [AgentConfig(name="helper", model="not-pulled:7b", fallback="qwen3:8b")]
        runner = start_gateway(tmp_path, sims, agents=agents)
        try:
            response = post(runner.session.gateway_url, "/api/chat", chat_body("hi", model="helper", stream=False))
            assert response.status_code == 200
            assert response.headers["X-Claw-Model-Downgraded"] == "qwen3:8b"
        finally:
            runner.stop()


def rfc3339_ns(text: str) -> tuple[str, int]:
    """(seconds part, nanoseconds) of an RFC 3339 UTC time such as 2026-11-21T12:38:37.3415Z."""
    seconds, _, fraction = text.rstrip("Z").partition(".")
    return seconds, int(fraction.ljust(9, "0")[:9] or 0)
