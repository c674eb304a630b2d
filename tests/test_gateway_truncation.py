"""A backend that ends an answer cleanly but without its last chunk (no `done`, no finish_reason, no [DONE]): every
surface tells the client in its own way, the request is recorded `error` and keeps what it relayed, and the
translations between surfaces carry Ollama's timings and honour `think: false`."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest

from tests.conftest import wait_until
from tests.gateway_support import SimBackends, chat_body, start_gateway


@pytest.fixture(params=["ollama", "openai"])
def backend(request, tmp_path):
    """One simulated backend of each kind: Ollama's native API, or an OpenAI-compatible server."""
    with SimBackends([{"openai_only": request.param == "openai"}]) as sims:
        runner = start_gateway(tmp_path, sims, kinds=[request.param], retries=0)
        try:
            yield runner.session, sims, request.param
        finally:
            runner.stop()


def finished(session, request_id: str):
    def done():
        record = session.ledger.get(request_id)
        return record if record is not None and record.status != "active" else None

    return wait_until(done)


def test_an_ollama_stream_cut_short_ends_with_an_error_line(backend):
    session, sims, _ = backend
    sims.call(lambda: sims.state(0).cut_stream_after(4))
    with httpx.stream("POST", session.gateway_url + "/api/chat", json=chat_body("tell me a story"), timeout=30) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
        request_id = r.headers["x-claw-request-id"]
    assert not any(line.get("done") for line in lines)  # no made-up final chunk
    assert "before its last chunk" in lines[-1]["error"]
    record = finished(session, request_id)
    assert record.status == "error" and "before its last chunk" in record.error
    assert record.completion_tokens == 4  # what was relayed is kept


def test_an_openai_stream_cut_short_ends_with_an_error_event(backend):
    session, sims, _ = backend
    sims.call(lambda: sims.state(0).cut_stream_after(4))
    body = chat_body("tell me a story", stream=True)
    with httpx.stream("POST", session.gateway_url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        request_id = r.headers["x-claw-request-id"]
    assert "[DONE]" not in events
    assert not any((json.loads(e).get("choices") or [{}])[0].get("finish_reason") for e in events[:-1])
    error = json.loads(events[-1])["error"]
    assert error["type"] == "api_error" and "before its last chunk" in error["message"]
    record = finished(session, request_id)
    assert record.status == "error" and record.completion_tokens == 4


def test_the_openai_sdk_raises_on_a_cut_stream(backend):
    session, sims, _ = backend
    sims.call(lambda: sims.state(0).cut_stream_after(3))
    client = openai.OpenAI(base_url=session.gateway_url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="qwen3:8b", messages=[{"role": "user", "content": "tell me a story"}], stream=True
    )
    with pytest.raises(openai.APIError, match="before its last chunk"):
        for _ in stream:
            pass


def test_a_whole_answer_cut_short_is_an_error_status_never_a_200(backend):
    session, sims, _ = backend
    sims.call(lambda: sims.state(0).cut_stream_after(3))
    native = httpx.post(session.gateway_url + "/api/chat", json=chat_body("hi", stream=False), timeout=30)
    assert native.status_code >= 500 and "error" in native.json()
    sims.call(lambda: sims.state(0).cut_stream_after(3))
    compat = httpx.post(session.gateway_url + "/v1/chat/completions", json=chat_body("hi"), timeout=30)
    assert compat.status_code >= 500 and compat.json()["error"]["message"]


def test_ollama_answers_carry_ollamas_timings_whatever_the_backend(backend):
    session, _, kind = backend
    answer = ollama.Client(host=session.gateway_url).chat(
        model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], stream=False
    )
    assert answer.done and answer.total_duration > 0 and answer.load_duration > 0
    assert answer.prompt_eval_count > 0 and answer.eval_count > 0 and answer.eval_duration > 0
    chunks = list(
        ollama.Client(host=session.gateway_url).chat(
            model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert chunks[-1].done and chunks[-1].load_duration > 0 and chunks[-1].eval_count > 0, kind


def test_think_false_returns_no_thinking(backend):
    session, _, kind = backend
    client = ollama.Client(host=session.gateway_url)
    thought = client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "why?"}], think=True)
    assert thought.message.thinking, kind  # qwen3 thinks when asked
    plain = client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "why?"}], think=False)
    assert not plain.message.thinking and plain.message.content
    streamed = list(
        client.chat(model="qwen3:8b", messages=[{"role": "user", "content": "why?"}], think=False, stream=True)
    )
    assert not any(chunk.message.thinking for chunk in streamed)
