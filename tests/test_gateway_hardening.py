"""Hostile input and misbehaving backends: every request the gateway cannot serve gets a clear 4xx before it
reaches a backend, one broken client cannot degrade service for others, connection-level abuse is cut off before
the application, whole answers honour the first-token timeout, and a backend that is down says so in words."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest

from claw_tui.config import AgentConfig
from tests.conftest import wait_until
from tests.gateway_support import SimBackends, chat_body, gateway_config, post, start_gateway

TOKEN = "user-token-1"
ADMIN = "admin-token-1"


@pytest.fixture
def sims():
    with SimBackends([{}]) as backends:
        yield backends


@pytest.fixture
def gateway(tmp_path, sims):
    """start(**gateway keys) → the Session; stopped after the test."""
    runners = []

    def start(**options):
        runner = start_gateway(tmp_path / f"g{len(runners)}", sims, **options)
        runners.append(runner)
        return runner.session

    yield start
    for runner in runners:
        runner.stop()


SIM_PATHS = ("/api/chat", "/api/generate", "/api/embed", "/api/create", "/api/copy", "/api/pull", "/api/show")


def arm_tripwire(sims) -> None:
    """The backend's next request fails with a 500 naming the tripwire (see `tripwire_untouched`)."""
    sims.call(lambda: sims.state(0).fail_next(1, status=500, message="tripwire", paths=SIM_PATHS))


def tripwire_untouched(session) -> bool:
    """True when no request reached the backend since `arm_tripwire`: the next one still meets it (retries=0)."""
    probe = post(session.gateway_url, "/api/chat", chat_body("probe", stream=False))
    return probe.status_code == 500 and probe.json()["error"] == "tripwire"


# ---- bad bytes at the door ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}],"temperature":NaN}', "NaN"),
        (b'{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}],"seed":Infinity}', "Infinity"),
        (b'{"model":"qwen3:8b","messages":[{"role":"user","content":"hi"}],"top_p":1e999}', "too large"),
        (b'{"model":"qwen3:8b","messages":[{"role":"user","content":"\\ud800"}]}', "surrogate"),
        (b'{"model":"qwen3:8b","messages":[{"role":"user","content":"\xed\xa0\x80"}]}', "UTF-8"),
        (b'{"model":"qwen3:8b","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested deeper"),
        (b'{"model":"qwen3:8b","x":' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper"),
    ],
)
def test_bad_bytes_are_a_400_on_every_surface(gateway, sims, path, raw, words):
    session = gateway(retries=0)
    arm_tripwire(sims)
    response = post(session.gateway_url, path, raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert words in message
    assert tripwire_untouched(session)  # nothing reached the backend


def test_a_lone_surrogate_is_a_400_on_every_surface_and_for_agents(tmp_path, sims):
    agent = AgentConfig(name="helper", model="qwen3:8b", system="You help.")
    runner = start_gateway(tmp_path, sims, agents=[agent])
    try:
        url = runner.session.gateway_url
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        for model in ("qwen3:8b", "helper"):
            # the SDKs cannot even encode such text; a raw client can, escaped as JSON allows
            raw = json.dumps({"model": model, "messages": [{"role": "user", "content": "a\ud800b"}]}).encode()
            for path in ("/api/chat", "/v1/chat/completions", "/api/generate"):
                answer = post(url, path, raw if path != "/api/generate" else raw.replace(b"messages", b"prompt_x"))
                error = answer.json()["error"]
                assert answer.status_code == 400 and "surrogate" in (
                    error if path.startswith("/api") else error["message"]
                )
        # an escaped surrogate pair is text (an emoji), not an error
        pair = b'{"model":"helper","messages":[{"role":"user","content":"hi \\ud83d\\ude00"}],"stream":false}'
        assert post(url, "/api/chat", pair).json()["message"]["content"]
        answer = client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "hi \U0001f600"}])
        assert answer.choices[0].message.content
    finally:
        runner.stop()


# ---- values checked against Ollama's parameter table and the OpenAI schema -------------------------------------


def test_option_types_are_checked_on_the_ollama_surface_with_ollamas_words(gateway, sims):
    session = gateway(retries=0)
    arm_tripwire(sims)
    client = ollama.Client(host=session.gateway_url)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], options={"temperature": "hot"})
    assert caught.value.status_code == 400
    assert 'option "temperature" must be of type float32' in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="qwen3:8b", prompt="hi", options={"num_ctx": "big"})
    assert caught.value.status_code == 400 and 'option "num_ctx" must be of type integer' in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="qwen3:8b", prompt="hi", options={"stop": "END"})
    assert caught.value.status_code == 400 and "array" in caught.value.error
    assert tripwire_untouched(session)
    # unknown option names pass, as Ollama ignores them
    answer = client.generate(model="qwen3:8b", prompt="hi", options={"not_an_option": 1, "temperature": 0.1})
    assert answer.response


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/generate", {"model": "qwen3:8b", "prompt": "hi", "context": "abc"}, "'context' must be an array"),
        ("/api/chat", {**chat_body(), "tools": [5]}, "'tools[0]' must be an object"),
        ("/api/chat", {**chat_body(), "think": "very"}, "'think' must be"),
        ("/v1/chat/completions", {**chat_body(), "max_tokens": -1}, "'max_tokens' must be at least 1"),
        ("/v1/chat/completions", {**chat_body(), "max_completion_tokens": 0}, "at least 1"),
        ("/v1/chat/completions", {**chat_body(), "n": 0}, "'n' must be 1"),
        ("/v1/chat/completions", {**chat_body(), "n": 2}, "one choice per request"),
        ("/v1/chat/completions", {**chat_body(), "temperature": "hot"}, "'temperature' must be a number"),
        ("/v1/chat/completions", {**chat_body(), "temperature": 7}, "between 0 and 2"),
        ("/v1/chat/completions", {**chat_body(), "response_format": {"type": "bogus"}}, "'response_format.type'"),
        ("/v1/chat/completions", {**chat_body(), "tools": [5]}, "'tools[0]' must be an object"),
        ("/v1/chat/completions", {**chat_body(), "tools": [{"type": "function"}]}, "'tools[0].function'"),
        (
            "/v1/chat/completions",
            {"model": "qwen3:8b", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "image_url.url",
        ),
        ("/api/create", {"model": "evil", "from": "../../etc/passwd"}, "'from' is not a valid model name"),
        ("/api/create", {"model": "../evil", "from": "qwen3:8b"}, "'model' is not a valid model name"),
        ("/api/copy", {"source": "qwen3:8b", "destination": "/tmp/x"}, "'destination' is not a valid model name"),
        ("/api/pull", {"model": "a b"}, "not a valid model name"),
        ("/api/show", {"model": "bad\nname"}, "not a model name"),
    ],
)
def test_accepted_but_wrong_values_are_a_400_before_the_backend(gateway, sims, path, body, words):
    session = gateway(retries=0)
    arm_tripwire(sims)
    response = post(session.gateway_url, path, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in (error["message"] if path.startswith("/v1/") else error)
    assert tripwire_untouched(session)


def test_openai_sdk_gets_its_own_error_types_for_bad_values(gateway):
    session = gateway()
    client = openai.OpenAI(base_url=session.gateway_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], n=2)
    assert caught.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], response_format={"type": "bogus"}
        )
    assert caught.value.body["type"] == "invalid_request_error"


# ---- one broken client or model does not degrade the others ----------------------------------------------------


def test_one_clients_bad_requests_neither_degrade_nor_retry(tmp_path):
    with SimBackends([{}, {}]) as sims:
        runner = start_gateway(tmp_path, sims, retries=1, static_reply="static", error_rate_min_samples=5)
        try:
            url = runner.session.gateway_url
            bad = chat_body("hi", stream=False, options={"temperature": "hot"})
            assert [post(url, "/api/chat", bad).status_code for _ in range(12)] == [400] * 12
            answer = post(url, "/api/chat", chat_body("a good question", stream=False))
            assert answer.status_code == 200 and answer.json()["message"]["content"] != "static"
            assert "X-Claw-Degraded" not in answer.headers
            backends = httpx.get(url + "/claw/v1/backends").json()["backends"]
            assert [b["state"] for b in backends] == ["up", "up"] and all(b["errors"] == 0 for b in backends)
            assert "claw_upstream_retries_total{" not in httpx.get(url + "/metrics").text
        finally:
            runner.stop()


def test_a_backends_4xx_is_relayed_once_and_counts_against_nothing(tmp_path):
    with SimBackends([{}, {}]) as sims:
        runner = start_gateway(tmp_path, sims, retries=1, static_reply="static", error_rate_min_samples=3)
        try:
            url = runner.session.gateway_url
            for index in (0, 1):
                sims.call(lambda i=index: sims.state(i).fail_next(2, status=400, message="bad prompt"))
            answers = [post(url, "/api/chat", chat_body(f"q{i}", stream=False)) for i in range(4)]
            assert [a.status_code for a in answers] == [400] * 4
            assert all(a.json()["error"] == "bad prompt" for a in answers)
            # four 400s used exactly the four faults: no request was tried twice
            assert post(url, "/api/chat", chat_body("next", stream=False)).status_code == 200
            # the answer's outcome is booked just after its bytes went out: wait for it, then check it is the only one
            ladder = runner.session.gateway.ladder
            wait_until(lambda: "qwen3:8b" in ladder.to_json()["models"])
            assert ladder.to_json()["models"]["qwen3:8b"] == {"error_rate": 0.0, "errors": 0, "outcomes": 1}
        finally:
            runner.stop()


def test_a_broken_model_gets_the_static_reply_and_a_healthy_one_does_not(gateway, sims):
    created = httpx.post(
        sims.url(0) + "/api/create",
        json={"model": "broken", "from": "llama3.2:3b", "parameters": {"temperature": "hot"}, "stream": False},
    )
    assert created.status_code == 200
    session = gateway(retries=0, static_reply="sorry, try later", error_rate_min_samples=10)
    url = session.gateway_url
    broken = [post(url, "/api/chat", chat_body(f"b{i}", model="broken", stream=False)) for i in range(30)]
    # the tenth failure trips the ladder for this model (it answers that very request), not earlier
    assert [b.status_code for b in broken[:9]] == [500] * 9
    assert all(b.status_code == 200 and b.headers["X-Claw-Degraded"] == "static" for b in broken[9:])
    healthy = post(url, "/api/chat", chat_body("hello", model="qwen3:8b", stream=False))
    assert healthy.status_code == 200 and "X-Claw-Degraded" not in healthy.headers
    assert healthy.json()["message"]["content"] != "sorry, try later"
    ladder = httpx.get(url + "/claw/v1/status").json()["gateway_policies"]["ladder"]
    assert ladder["degraded_models"] == ["broken"] and ladder["models"]["qwen3:8b"]["errors"] == 0


# ---- connection limits -----------------------------------------------------------------------------------------


def _address(session) -> tuple[str, int]:
    host, port = session.gateway_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def test_a_huge_header_is_refused_fast_before_auth(gateway):
    session = gateway(tokens=[TOKEN])
    sock = socket.create_connection(_address(session))
    started = time.monotonic()
    sent = 0
    sock.sendall(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
    line = b"X-Filler: " + b"a" * 8000 + b"\r\n"
    try:
        while sent < 64 * 1024 * 1024:
            sock.sendall(line)
            sent += len(line)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"larger than 65536 bytes" in answer
    assert sent < 8 * 1024 * 1024  # cut off long before 64 MiB
    assert time.monotonic() - started < 5
    assert httpx.get(session.gateway_url + "/").status_code == 200  # still serving


def test_a_half_sent_request_is_dropped_after_the_header_timeout(gateway):
    session = gateway(header_timeout_s=0.5)
    sock = socket.create_connection(_address(session))
    sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Ty")
    started = time.monotonic()
    answer = _read_all(sock)
    waited = time.monotonic() - started
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"within 0.5s" in answer
    assert 0.3 < waited < 4


def test_a_half_sent_body_is_dropped_after_the_body_timeout(gateway):
    session = gateway(body_timeout_s=0.5)
    sock = socket.create_connection(_address(session))
    sock.sendall(
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"nothing came for 0.5s" in answer


def test_idle_half_open_connections_do_not_lock_out_a_real_client(gateway):
    session = gateway(max_connections=8, header_timeout_s=30)
    address = _address(session)
    idle = []
    for _ in range(30):  # far more than the cap, each holding half a request
        sock = socket.create_connection(address)
        sock.sendall(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
        idle.append(sock)
    response = httpx.get(session.gateway_url + "/api/version", timeout=5)
    assert response.status_code == 200
    closed = sum(1 for sock in idle if _read_all(sock, timeout=0.2) == b"")
    assert closed >= 30 - 8  # the oldest idle ones made room
    for sock in idle:
        sock.close()


def test_busy_connections_beyond_the_cap_get_a_503(gateway, sims):
    session = gateway(max_connections=2)
    sims.call(lambda: sims.state(0).stall_next(2.0, requests=2))
    with ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(post, session.gateway_url, "/api/chat", chat_body(f"s{i}", stream=False)) for i in range(2)]
        wait_until(lambda: session.gateway.active == 2)  # two requests in progress fill the cap
        sock = socket.create_connection(_address(session))
        answer = _read_all(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many open connections" in answer
        assert [f.result().status_code for f in busy] == [200, 200]


def test_a_client_that_sends_the_whole_body_first_reads_the_413(gateway):
    session = gateway(max_body_bytes=1024 * 1024)
    host, port = _address(session)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    body = b'{"model":"qwen3:8b","prompt":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    connection.request("POST", "/api/generate", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413
    assert "request body too large" in json.loads(response.read())["error"]
    connection.close()


# ---- timeouts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["chat", "generate"])
def test_the_first_token_timeout_holds_for_whole_native_answers(gateway, sims, op):
    session = gateway(first_token_timeout_s=0.5, retries=0)
    client = ollama.Client(host=session.gateway_url)
    sims.call(lambda: sims.state(0).stall_next(4.0))
    started = time.monotonic()
    with pytest.raises(ollama.ResponseError) as caught:
        if op == "chat":
            client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], stream=False)
        else:
            client.generate(model="qwen3:8b", prompt="hi", stream=False)
    assert caught.value.status_code == 504 and "no first token" in caught.value.error
    assert time.monotonic() - started < 3
    record = wait_until(lambda: next((r for r in session.ledger.records() if r.status != "active"), None))
    assert record.status == "error" and record.http_status == 504


def test_whole_native_answers_keep_their_shape(gateway):
    session = gateway()
    client = ollama.Client(host=session.gateway_url)
    chat = client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "tell me about joules"}], stream=False)
    assert chat.done and chat.done_reason == "stop" and chat.message.role == "assistant" and chat.message.content
    assert chat.eval_count and chat.prompt_eval_count and chat.total_duration and chat.load_duration is not None
    generated = client.generate(model="llama3.2:3b", prompt="tell me about watts", stream=False)
    assert generated.done and generated.response and generated.eval_count
    raw = post(session.gateway_url, "/api/generate", {"model": "llama3.2:3b", "prompt": "x", "stream": False})
    assert raw.headers["content-type"].startswith("application/json") and "\n" not in raw.text.strip()
    record = wait_until(lambda: (r := session.ledger.get(raw.headers["X-Claw-Request-Id"])) and r.status == "ok" and r)
    assert record.ttft_ms is not None and record.completion_tokens == raw.json()["eval_count"]


# ---- a backend that is down ----------------------------------------------------------------------------------------


def test_model_lists_answer_502_naming_the_backend_that_is_down(tmp_path, sims):
    config = gateway_config(sims)
    sims.stop_server(0)
    runner = start_gateway(tmp_path, sims, config)
    try:
        url = runner.session.gateway_url
        tags = httpx.get(url + "/api/tags")
        assert tags.status_code == 502
        message = tags.json()["error"]
        assert f"backend 'b0' is unreachable at {sims.url(0)}" in message and "ollama serve" in message
        assert "ClientConnectorError" not in message
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.models.list()
        assert caught.value.status_code == 502 and "[[backends]] url" in caught.value.message
        with pytest.raises(ollama.ResponseError) as chat_error:
            ollama.Client(host=url).chat(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}])
        assert "connection refused" in chat_error.value.error and "Error" not in chat_error.value.error
        backend = httpx.get(url + "/claw/v1/backends").json()["backends"][0]
        assert backend["state"] in ("up", "down") and "connection refused" in backend["last_error"]
        down = wait_until(lambda: httpx.get(url + "/claw/v1/backends").json()["backends"][0]["state"] == "down")
        assert down
        status = httpx.get(url + "/claw/v1/status").json()["backends"][0]
        assert status["state"] == "down" and status["state_reason"].startswith(f"unreachable at {sims.url(0)}")
    finally:
        runner.stop()


# ---- contract: governor auth, telemetry source -------------------------------------------------------------------


def test_reading_the_governor_needs_a_token_switching_it_an_admin_token(gateway):
    session = gateway(tokens=[TOKEN], admin_tokens=[ADMIN])
    url = session.gateway_url + "/claw/v1/governor"
    user, admin = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {ADMIN}"}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=user).status_code == 200
    refused = httpx.post(url, json={"enabled": True}, headers=user)
    assert refused.status_code == 403 and "needs an admin token" in refused.json()["error"]
    switched = httpx.post(url, json={"enabled": True}, headers=admin)
    assert switched.status_code == 200 and switched.json()["enabled"] is True


def test_telemetry_source_sim_without_demo_is_refused(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[telemetry]\nsource = "sim"\n')
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}:2: telemetry.source:" in result.stderr and "--demo" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_a_whole_answer_that_ends_in_an_error_is_never_a_200(gateway, sims, path):
    session = gateway(retries=0)
    sims.call(lambda: sims.state(0).error_mid_stream_after(2, message="runner crashed"))
    response = post(session.gateway_url, path, chat_body("tell me a story", stream=False))
    assert response.status_code == 500
    error = response.json()["error"]
    assert "runner crashed" in (error["message"] if path.startswith("/v1/") else error)
    record = wait_until(
        lambda: (r := session.ledger.get(response.headers["X-Claw-Request-Id"])) and r.status != "active" and r
    )
    assert record.status == "error" and record.http_status == 500


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/claw/v1/summary"),
        ("GET", "/claw/v1/events"),
        ("GET", "/claw/v1/telemetry"),
        ("GET", "/claw/v1/agents"),
        ("POST", "/claw/v1/governor"),
        ("GET", "/claw/v1/conversations"),
    ],
)
async def test_a_gateway_without_a_session_answers_503_on_claws_own_endpoints(method, path):
    """A Gateway built without its host (a library user's) serves the model endpoints; claw's own say why they
    cannot answer instead of failing with a 500."""
    from claw_tui.gateway.app import Gateway
    from claw_tui.ledger import Ledger

    gateway = Gateway(backends=[], ledger=Ledger(), agents=[])
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://claw") as client:
        answer = await client.request(method, path, json={"enabled": True} if method == "POST" else None)
        status = await client.get("/claw/v1/status")
    assert answer.status_code == 503, answer.text
    assert "without a claw session" in answer.json()["error"]
    assert status.status_code == 200 and status.json()["service"] == "claw"
