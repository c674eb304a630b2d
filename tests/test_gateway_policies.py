"""Every gateway policy through HTTP: auth, listen safety, body limit, rate limit, in-flight queue, VRAM admission,
retries, fallback, weighted balancing, the degradation ladder, singleflight, supersede, context trimming, warm-up,
and /metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest

from claw_tui.config import AgentConfig
from claw_tui.gateway.policies import UnsafeListenError
from claw_tui.session import Session, SessionOptions, SessionThread
from tests.conftest import wait_until
from tests.gateway_support import SimBackends, chat_body, gateway_config, post, start_gateway

TOKEN = "s3cret-user-token"
ADMIN = "s3cret-admin-token"


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


def record_of(session, response):
    request_id = response.headers["X-Claw-Request-Id"]
    return wait_until(lambda: (r := session.ledger.get(request_id)) is not None and r.status != "active" and r)


# ---- auth ------------------------------------------------------------------------------------------------------


def test_bearer_tokens_header_query_and_admin(gateway):
    session = gateway(tokens=[TOKEN], admin_tokens=[ADMIN])
    url = session.gateway_url
    missing = post(url, "/api/chat", chat_body("hi", stream=False))
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = post(url, "/api/chat", chat_body("hi", stream=False), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "invalid bearer token" in wrong.json()["error"]
    oai = post(url, "/v1/chat/completions", chat_body("hi"))
    assert oai.status_code == 401 and oai.json()["error"]["type"] == "authentication_error"
    ok = post(url, "/api/chat", chat_body("hi", stream=False), headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert post(url, f"/api/chat?token={TOKEN}", chat_body("hi", stream=False)).status_code == 200
    assert httpx.get(url + "/").status_code == 200  # liveness needs no token
    assert httpx.get(url + "/api/tags").status_code == 401
    # admin endpoints need an admin token; the admin token works everywhere
    pull = {"model": "llama3.2:3b", "stream": False}
    forbidden = post(url, "/api/pull", pull, headers={"Authorization": f"Bearer {TOKEN}"})
    assert forbidden.status_code == 403 and "admin token" in forbidden.json()["error"]
    assert post(url, "/api/pull", pull, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert (
        post(url, "/api/chat", chat_body("hi", stream=False), headers={"Authorization": f"Bearer {ADMIN}"}).status_code
        == 200
    )


def test_sdks_authenticate_with_the_token(gateway):
    session = gateway(tokens=[TOKEN])
    client = openai.OpenAI(base_url=session.gateway_url + "/v1", api_key=TOKEN, max_retries=0)
    assert client.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}]).choices
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=session.gateway_url + "/v1", api_key="wrong", max_retries=0).models.list()
    ol = ollama.Client(host=session.gateway_url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ol.list().models
    # claw's own faces get a session token
    assert httpx.get(session.gateway_url + "/api/tags", headers=session.gateway_headers()).status_code == 200
    # with no admin tokens configured, a client token may manage models
    pulled = post(
        session.gateway_url,
        "/api/pull",
        {"model": "llama3.2:3b", "stream": False},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert pulled.status_code == 200


def test_refuses_to_listen_beyond_loopback_without_a_token(tmp_path, sims):
    config = gateway_config(sims)
    options = SessionOptions(listen=("0.0.0.0", 0), store_path=tmp_path / "s.db", telemetry_source=sims.telemetry())
    runner = SessionThread(Session(config, options))
    with pytest.raises(UnsafeListenError, match="without a token"):
        runner.start()
    config.gateway.tokens = [TOKEN]
    runner = SessionThread(Session(config, options))
    runner.start()
    try:
        assert runner.session.gateway_url.startswith("http://0.0.0.0:")
    finally:
        runner.stop()


def test_serve_refuses_a_public_listen_without_a_token(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.db"}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "claw_tui", "serve", "--demo", "--listen", f"0.0.0.0:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, CLAW_CONFIG=str(config)),
    )
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr and "Traceback" not in result.stderr


# ---- limits ----------------------------------------------------------------------------------------------------


def test_rate_limit_per_token(gateway):
    session = gateway(tokens=[TOKEN, "other-token"], rate_limit_rpm=6, rate_limit_burst=2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses = [
        post(session.gateway_url, "/api/chat", chat_body("hi", stream=False), headers=headers) for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    limited = statuses[-1]
    assert int(limited.headers["Retry-After"]) >= 1
    assert "rate limit" in limited.json()["error"]
    record = record_of(session, limited)
    assert record.status == "rejected" and record.http_status == 429
    # another token has its own bucket
    other = post(
        session.gateway_url, "/api/chat", chat_body("hi", stream=False), headers={"Authorization": "Bearer other-token"}
    )
    assert other.status_code == 200
    oai = post(session.gateway_url, "/v1/chat/completions", chat_body("hi"), headers=headers)
    assert oai.status_code == 429 and oai.json()["error"]["type"] == "rate_limit_error"


def test_in_flight_limit_queues_then_503(gateway, sims):
    session = gateway(max_in_flight=1, queue_size=1, queue_timeout_s=0.5, retries=0)
    sims.call(lambda: sims.state(0).stall_next(1.5, after_chunks=0))
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, session.gateway_url, "/api/chat", chat_body("first", stream=False))
        wait_until(lambda: session.backends[0].in_flight == 1)
        second = pool.submit(post, session.gateway_url, "/api/chat", chat_body("second", stream=False))
        wait_until(lambda: session.backends[0].admission.waiting == 1)
        third = post(session.gateway_url, "/api/chat", chat_body("third", stream=False))
        assert third.status_code == 503 and int(third.headers["Retry-After"]) >= 1
        assert "busy" in third.json()["error"]
        queued_too_long = second.result(10)
        assert queued_too_long.status_code == 503 and "within 0.5s" in queued_too_long.json()["error"]
        assert first.result(10).status_code == 200
    assert record_of(session, third).status == "rejected"
    # a request that waits less than the queue timeout gets through
    sims.call(lambda: sims.state(0).stall_next(0.2, after_chunks=0))
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(post, session.gateway_url, "/api/chat", chat_body("a", stream=False))
        wait_until(lambda: session.backends[0].in_flight == 1)
        b = pool.submit(post, session.gateway_url, "/api/chat", chat_body("b", stream=False))
        assert a.result(10).status_code == 200 and b.result(10).status_code == 200
    record = record_of(session, b.result())
    assert record.t_queue_exit > record.t_arrival


def test_vram_pressure_holds_requests_then_503(gateway, sims):
    session = gateway(vram_admission_pct=5.0, queue_timeout_s=0.6, retries=0)
    warm = post(session.gateway_url, "/api/chat", chat_body("load the big model", model="qwen3:32b", stream=False))
    assert warm.status_code == 200
    wait_until(lambda: session.gateway._vram_pct(0) and session.gateway._vram_pct(0) > 5.0)
    held = post(session.gateway_url, "/api/chat", chat_body("hi", stream=False))
    assert held.status_code == 503 and "GPU memory pressure" in held.json()["error"]
    assert held.headers["Retry-After"]

    def unload_later():
        time.sleep(0.2)
        httpx.post(sims.url(0) + "/api/generate", json={"model": "qwen3:32b", "keep_alive": 0})

    threading.Thread(target=unload_later).start()
    admitted = post(session.gateway_url, "/api/chat", chat_body("hi", model="llama3.2:3b", stream=False))
    assert admitted.status_code == 200


def test_retry_before_the_first_byte(gateway, sims):
    session = gateway(retries=1)
    sims.call(lambda: sims.state(0).fail_next(1, status=503))
    response = post(session.gateway_url, "/api/chat", chat_body("hi", stream=False))
    assert response.status_code == 200
    assert record_of(session, response).status == "ok"
    sims.call(lambda: sims.state(0).fail_next(2, status=500))
    failed = post(session.gateway_url, "/api/chat", chat_body("hi", stream=False))
    assert failed.status_code == 500


def test_fallback_model_answers_with_the_header(gateway, sims):
    session = gateway(retries=1, fallback_models={"qwen3:32b": "qwen3:8b"})
    sims.call(lambda: sims.state(0).fail_next(2, status=500))  # both attempts at qwen3:32b
    response = post(session.gateway_url, "/api/chat", chat_body("hi", model="qwen3:32b", stream=False))
    assert response.status_code == 200
    assert response.headers["X-Claw-Model-Downgraded"] == "qwen3:8b"
    assert response.headers["X-Claw-Model"] == "qwen3:8b"
    assert response.json()["model"] == "qwen3:8b"
    record = record_of(session, response)
    assert record.downgraded_from == "qwen3:32b" and record.model == "qwen3:8b"
    metrics = httpx.get(session.gateway_url + "/metrics").text
    assert 'claw_fallbacks_total{fallback="qwen3:8b",model="qwen3:32b"} 1.0' in metrics


def test_weighted_balancing_follows_weights_and_gpu_types(tmp_path):
    with SimBackends([{}, {}, {"gpu_name": "NVIDIA A100-SXM4-80GB"}]) as sims:
        runner = start_gateway(tmp_path, sims, weights=[3.0, 1.0, 3.0])
        try:
            url = runner.session.gateway_url
            counts = {"b0": 0, "b1": 0, "b2": 0}
            for i in range(40):
                counts[post(url, "/api/chat", chat_body(f"q{i}", stream=False)).headers["X-Claw-Backend"]] += 1
            assert sum(counts.values()) == 40
            assert counts["b0"] > 2 * counts["b1"] and counts["b1"] > 0  # weight 3 vs 1
            assert counts["b0"] > counts["b2"] > 0  # same weight, but an A100 decodes slower than an H200
            backends = httpx.get(url + "/claw/v1/backends").json()["backends"]
            assert [b["weight"] for b in backends] == [3.0, 1.0, 3.0]
            assert all(b["state"] == "up" and b["in_flight"] == 0 for b in backends)
        finally:
            runner.stop()


def test_a_model_failing_on_one_backend_moves_to_the_other_which_stays_up(tmp_path):
    with SimBackends([{}, {}]) as sims:
        # "flaky" is broken on b0 only (a bad parameter stored in it makes every request fail there with a 500)
        for index, parameters in ((0, {"temperature": "hot"}), (1, {})):
            created = httpx.post(
                sims.url(index) + "/api/create",
                json={"model": "flaky", "from": "llama3.2:3b", "parameters": parameters, "stream": False},
            )
            assert created.status_code == 200
        runner = start_gateway(tmp_path, sims, retries=0, health_interval_s=60, error_rate_min_samples=4)
        try:
            url = runner.session.gateway_url
            answers = [post(url, "/api/chat", chat_body(f"q{i}", model="flaky", stream=False)) for i in range(12)]
            failed_on_b0 = [a for a in answers if a.status_code == 500]
            assert 1 <= len(failed_on_b0) <= 4 and all(a.headers.get("X-Claw-Request-Id") for a in failed_on_b0)
            assert [a.headers["X-Claw-Backend"] for a in answers[-4:]] == ["b1"] * 4  # routed away from b0
            backends = {b["name"]: b for b in httpx.get(url + "/claw/v1/backends").json()["backends"]}
            assert backends["b0"]["state"] == "up"  # one broken model does not take the backend out of rotation
            assert backends["b0"]["failing_models"] == ["flaky"] and backends["b1"]["failing_models"] == []
            assert "temperature" in backends["b0"]["last_error"] and "flaky" in backends["b0"]["state_reason"]
            others = {
                post(url, "/api/chat", chat_body(f"r{i}", stream=False)).headers["X-Claw-Backend"] for i in range(6)
            }
            assert others == {"b0", "b1"}  # other models still use both backends
        finally:
            runner.stop()


def test_failing_health_checks_take_a_backend_out_of_rotation(tmp_path):
    with SimBackends([{}, {}]) as sims:
        runner = start_gateway(tmp_path, sims, health_interval_s=0.05)
        try:
            url = runner.session.gateway_url
            sims.call(lambda: sims.state(0).fail_next(50, status=500, paths=["/api/tags"]))

            def state(name):
                return next(b for b in httpx.get(url + "/claw/v1/backends").json()["backends"] if b["name"] == name)

            degraded = wait_until(lambda: state("b0")["state"] == "degraded" and state("b0"), timeout=10)
            assert "health check" in degraded["last_error"] and "out of rotation" in degraded["state_reason"]
            served = {
                post(url, "/api/chat", chat_body(f"q{i}", stream=False)).headers["X-Claw-Backend"] for i in range(4)
            }
            assert served == {"b1"}
            sims.call(lambda: sims.state(0).clear_faults())
            wait_until(lambda: state("b0")["state"] == "up", timeout=10)
        finally:
            runner.stop()


# ---- the degradation ladder ------------------------------------------------------------------------------------


def _fail_until_ladder(session, sims, model="qwen3:8b", min_samples=5):
    """Make the backend fail every request until the ladder starts for `model`: not before min_samples outcomes."""
    sims.call(lambda: sims.state(0).fail_next(1000, status=500))
    sent = 0
    while not session.gateway.ladder.active(model):
        post(session.gateway_url, "/api/chat", chat_body(f"failing {sent}", model=model, stream=False))
        sent += 1
        assert sent <= min_samples
    assert session.gateway.ladder.to_json()["models"][model]["outcomes"] == min_samples
    sims.call(lambda: sims.state(0).clear_faults())


def test_ladder_serves_identical_answers_from_the_cache(gateway, sims):
    session = gateway(retries=0, cache_ttl_s=60, error_rate_threshold=0.5, error_rate_min_samples=5)
    body = chat_body("what is a joule?", stream=False)
    fresh = post(session.gateway_url, "/api/chat", body)
    assert fresh.status_code == 200 and "X-Claw-Cache" not in fresh.headers
    _fail_until_ladder(session, sims)
    sims.call(lambda: sims.state(0).fail_next(10, status=500))
    cached = post(session.gateway_url, "/api/chat", body)
    assert cached.status_code == 200
    assert cached.headers["X-Claw-Cache"] == "hit" and cached.headers["X-Claw-Degraded"] == "cache"
    assert cached.json()["message"] == fresh.json()["message"]
    assert record_of(session, cached).backend == "cache"


def test_ladder_downgrades_to_the_fallback_then_replies_static(gateway, sims):
    session = gateway(
        retries=0,
        degrade_to_fallback=True,
        static_reply="We are overloaded, please retry.",
        fallback_models={"qwen3:32b": "qwen3:8b"},
        error_rate_min_samples=5,
    )
    _fail_until_ladder(session, sims, model="qwen3:32b")
    downgraded = post(session.gateway_url, "/api/chat", chat_body("hi", model="qwen3:32b", stream=False))
    assert downgraded.status_code == 200
    assert downgraded.headers["X-Claw-Model-Downgraded"] == "qwen3:8b"
    # a model without a fallback: once its own error rate is high, the static reply, in each surface's shape
    _fail_until_ladder(session, sims, model="llama3.2:3b")
    ol = ollama.Client(host=session.gateway_url)
    assert (
        ol.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "x"}]).message.content
        == "We are overloaded, please retry."
    )
    parts = list(ol.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "x"}], stream=True))
    assert parts[-1].done and "".join(p.message.content for p in parts) == "We are overloaded, please retry."
    oai = openai.OpenAI(base_url=session.gateway_url + "/v1", api_key="x", max_retries=0)
    completion = oai.chat.completions.create(model="llama3.2:3b", messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "We are overloaded, please retry."
    chunks = list(
        oai.chat.completions.create(model="llama3.2:3b", stream=True, messages=[{"role": "user", "content": "x"}])
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "We are overloaded, please retry."
    raw = post(session.gateway_url, "/api/generate", {"model": "llama3.2:3b", "prompt": "x", "stream": False})
    assert raw.headers["X-Claw-Degraded"] == "static" and raw.json()["response"] == "We are overloaded, please retry."
    assert record_of(session, raw).status == "rejected"
    # a healthy model is answered by its backend, not by the ladder
    healthy = post(session.gateway_url, "/api/chat", chat_body("hi", model="qwen3:8b", stream=False))
    assert healthy.status_code == 200 and "X-Claw-Degraded" not in healthy.headers
    assert healthy.json()["message"]["content"] != "We are overloaded, please retry."


def test_ladder_is_off_until_the_error_rate_is_high(gateway, sims):
    session = gateway(retries=0, static_reply="static")
    sims.call(lambda: sims.state(0).fail_next(1, status=500))
    failed = post(session.gateway_url, "/api/chat", chat_body("hi", stream=False))
    assert failed.status_code == 500  # one failure in a handful is no reason to degrade
    assert (
        post(session.gateway_url, "/api/chat", chat_body("hi", stream=False)).json()["message"]["content"] != "static"
    )


# ---- identical and superseded requests ------------------------------------------------------------------------


def test_singleflight_shares_one_upstream_request(gateway, sims):
    session = gateway(singleflight=True)
    sims.call(lambda: sims.state(0).stall_next(0.5, after_chunks=0))
    before = sims.call(lambda: sims.state(0).requests_total)
    body = chat_body("the same question", stream=True)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: post(session.gateway_url, "/api/chat", body), range(5)))
    assert sims.call(lambda: sims.state(0).requests_total) - before == 1
    assert len({r.content for r in responses}) == 1 and all(r.status_code == 200 for r in responses)
    assert sum("X-Claw-Singleflight" in r.headers for r in responses) == 4
    records = [record_of(session, r) for r in responses]
    assert all(r.status == "ok" and r.completion_tokens > 0 for r in records)
    assert len({r.id for r in records}) == 5
    # different requests are not shared
    a, b = (
        post(session.gateway_url, "/api/chat", chat_body("one")),
        post(session.gateway_url, "/api/chat", chat_body("two")),
    )
    assert "X-Claw-Singleflight" not in a.headers and "X-Claw-Singleflight" not in b.headers


def test_supersede_answers_the_replaced_turn_409(gateway, sims):
    session = gateway(supersede=True)
    sims.call(lambda: sims.state(0).stall_next(2.0, after_chunks=0))
    headers = {"X-Claw-Conversation": "conv-1"}
    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(post, session.gateway_url, "/api/chat", chat_body("first try"), headers=headers)
        wait_until(lambda: session.backends[0].in_flight == 1)
        newer = post(session.gateway_url, "/api/chat", chat_body("second try", stream=False), headers=headers)
        replaced = older.result(10)
    assert newer.status_code == 200
    assert replaced.status_code == 409
    assert newer.headers["X-Claw-Request-Id"] in replaced.json()["error"]
    record = record_of(session, replaced)
    assert record.status == "cancelled" and record.http_status == 409
    wait_until(lambda: sims.call(lambda: sims.state(0).in_flight) == 0)


def test_supersede_by_history_and_only_before_the_first_token(gateway, sims):
    session = gateway(supersede=True)
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}]

    def turn(text: str) -> dict:
        return {"model": "qwen3:8b", "messages": [*history, {"role": "user", "content": text}], "stream": False}

    sims.call(lambda: sims.state(0).stall_next(2.0, after_chunks=0))
    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(post, session.gateway_url, "/api/chat", turn("what is a watt"))
        wait_until(lambda: session.backends[0].in_flight == 1)
        newer = post(session.gateway_url, "/api/chat", turn("what is a joule"))
        assert older.result(10).status_code == 409 and newer.status_code == 200
    # a turn already answering is not replaced
    with ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(
            post, session.gateway_url, "/api/chat", dict(turn("long answer"), stream=True, options={"sim_tokens": 200})
        )
        wait_until(lambda: any(r.t_first_token and r.status == "active" for r in session.ledger.records()))
        assert post(session.gateway_url, "/api/chat", turn("another")).status_code == 200
        assert streaming.result(10).status_code == 200


def test_context_is_trimmed_to_the_agent_budget(tmp_path, sims):
    agents = [
        AgentConfig(name="brief", model="qwen3:8b", system="You are brief.", max_context_tokens=60),
        AgentConfig(name="roomy", model="qwen3:8b", system="You are brief."),
    ]
    runner = start_gateway(tmp_path, sims, agents=agents)
    try:
        url = runner.session.gateway_url
        history = []
        for i in range(12):
            history += [
                {"role": "user", "content": f"question number {i} about power and clocks"},
                {"role": "assistant", "content": f"answer number {i} about watts and joules"},
            ]
        history.append({"role": "user", "content": "and the last question?"})
        trimmed = post(url, "/api/chat", {"model": "brief", "messages": history, "stream": False})
        full = post(url, "/api/chat", {"model": "roomy", "messages": history, "stream": False})
        assert trimmed.status_code == 200 and full.status_code == 200
        assert int(trimmed.headers["X-Claw-Context-Trimmed"]) > 10
        assert "X-Claw-Context-Trimmed" not in full.headers
        assert trimmed.json()["prompt_eval_count"] < full.json()["prompt_eval_count"] / 3
        oai = post(url, "/v1/chat/completions", {"model": "brief", "messages": history})
        assert int(oai.headers["X-Claw-Context-Trimmed"]) > 10
    finally:
        runner.stop()


# ---- warm-up and metrics ---------------------------------------------------------------------------------------


def test_warm_up_loads_models_at_start(tmp_path, sims):
    runner = start_gateway(tmp_path, sims, warmup_prompt="Hello", warmup_models=["llama3.2:3b", "missing:1b"])
    try:
        session = runner.session
        warmups = wait_until(lambda: len(session.gateway.warmup_results) == 2 and session.gateway.warmup_results)
        assert warmups["llama3.2:3b"] == "ok" and warmups["missing:1b"].startswith("404")
        warmups = session.ledger.model_events()  # model operations, not requests
        assert {(r.kind, r.model) for r in warmups} == {("warmup", "llama3.2:3b"), ("warmup", "missing:1b")}
        assert not [r for r in session.ledger.records() if r.client == "warmup"]
        loaded = {m["name"] for m in httpx.get(sims.url(0) + "/api/ps").json()["models"]}
        assert "llama3.2:3b" in loaded
    finally:
        runner.stop()


def test_metrics_in_prometheus_format_per_session(gateway):
    first = gateway()
    second = gateway()
    for _ in range(3):
        assert post(first.gateway_url, "/api/chat", chat_body("hi", stream=False)).status_code == 200
    post(first.gateway_url, "/api/chat", chat_body("hi", model="nope:1b"))
    wait_until(lambda: all(r.energy_final for r in first.ledger.records()))
    response = httpx.get(first.gateway_url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'claw_requests_total{agent="",model="qwen3:8b",status="ok"} 3.0' in text
    # a model no backend serves and no configuration names is counted as "other" (bounded label values)
    assert 'claw_requests_total{agent="",model="other",status="error"} 1.0' in text
    assert 'claw_request_duration_seconds_bucket{agent="",le="+Inf",model="qwen3:8b"} 3.0' in text
    assert 'claw_time_to_first_token_seconds_count{agent="",model="qwen3:8b"} 3.0' in text
    assert 'claw_tokens_total{agent="",kind="completion",model="qwen3:8b"}' in text
    assert 'claw_request_energy_joules_total{agent="",model="qwen3:8b"}' in text
    assert 'claw_backend_state{backend="b0",state="up"} 1.0' in text
    assert 'claw_backend_in_flight_requests{backend="b0"} 0.0' in text
    assert 'claw_gpu_power_watts{gpu="0",name="NVIDIA H200"}' in text
    assert "claw_in_flight_requests 0.0" in text
    other = httpx.get(second.gateway_url + "/metrics").text
    assert 'model="qwen3:8b",status="ok"' not in other  # a registry per session
