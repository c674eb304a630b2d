"""The gateway in front of the simulator, driven by the real openai and ollama SDKs."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest

from tests.conftest import wait_until


@pytest.fixture
def oai(demo):
    client = openai.OpenAI(base_url=demo.gateway_url + "/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def ol(demo):
    return ollama.Client(host=demo.gateway_url)


def final_records(session, n: int):
    def ready():
        session.refresh_telemetry()
        records = [r for r in session.ledger.records() if r.status != "active"]
        return records if len(records) >= n and all(r.energy_final for r in records) else None

    return wait_until(ready)


def test_openai_sdk_non_stream(demo, oai):
    completion = oai.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "Say hi"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    [record] = final_records(demo, 1)
    assert record.surface == "openai" and record.status == "ok"
    assert record.completion_tokens == completion.usage.completion_tokens
    assert record.ttft_ms is not None and record.ttft_ms <= record.duration_ms


def test_openai_sdk_stream_with_usage(demo, oai):
    stream = oai.chat.completions.create(
        model="qwen3:8b",
        messages=[{"role": "user", "content": "Tell me about GPUs"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
    [record] = final_records(demo, 1)
    assert record.completion_tokens == usage_chunks[0].usage.completion_tokens
    assert record.energy_j > 0


def test_openai_stream_without_usage_sends_no_usage_chunk(demo, oai):
    stream = oai.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert all(c.usage is None for c in stream)


def test_openai_models_lists_backend_models(oai):
    ids = {m.id for m in oai.models.list()}
    assert {"qwen3:8b", "qwen3:32b"} <= ids


def test_openai_unknown_model_is_a_404_in_openai_shape(oai):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert "nope:1b" in caught.value.body["message"]


def test_ollama_sdk_chat_stream(demo, ol):
    parts = list(ol.chat(model="qwen3:8b", messages=[{"role": "user", "content": "Why is the sky blue?"}], stream=True))
    assert parts[-1].done and parts[-1].eval_count > 0 and parts[-1].eval_duration > 0
    text = "".join(p.message.content for p in parts)
    assert text
    [record] = final_records(demo, 1)
    assert record.surface == "ollama" and record.status == "ok"
    assert record.completion_tokens == parts[-1].eval_count
    assert record.prompt_tokens == parts[-1].prompt_eval_count
    assert record.server_eval_ms == pytest.approx(parts[-1].eval_duration / 1e6)
    assert record.energy_j > 0 and record.prefill_j + record.decode_j == pytest.approx(record.energy_j)


def test_ollama_sdk_generate_non_stream(demo, ol):
    response = ol.generate(model="qwen3:8b", prompt="Count to three")
    assert response.done and response.response
    [record] = final_records(demo, 1)
    assert record.endpoint == "/api/generate" and record.stream is False
    assert record.completion_tokens == response.eval_count
    assert record.ttft_ms is not None


def test_ollama_sdk_list_and_show(ol):
    names = {m.model for m in ol.list().models}
    assert "qwen3:8b" in names
    shown = ol.show("qwen3:8b")
    assert shown.modelinfo is not None
    assert shown.details.family


def test_ollama_sdk_unknown_model(ol):
    with pytest.raises(ollama.ResponseError) as caught:
        ol.chat(model="missing:7b", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'missing:7b' not found"


def test_requests_endpoint_lists_metered_records(demo, oai, ol):
    oai.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "a"}])
    ol.chat(model="qwen3:8b", messages=[{"role": "user", "content": "b"}])
    final_records(demo, 2)
    body = httpx.get(demo.gateway_url + "/claw/v1/requests?limit=10").json()
    records = body["requests"]
    assert len(records) == 2
    for record in records:
        for field in (
            "id",
            "agent",
            "model",
            "backend",
            "status",
            "http_status",
            "prompt_tokens",
            "completion_tokens",
            "ttft_ms",
            "duration_ms",
            "energy_j",
            "prefill_j",
            "decode_j",
            "tokens_per_joule",
        ):
            assert field in record
        assert record["completion_tokens"] > 0 and record["energy_j"] > 0 and record["status"] == "ok"
    assert {r["surface"] for r in records} == {"openai", "ollama"}


def test_response_headers_name_request_backend_and_model(demo):
    response = httpx.post(
        demo.gateway_url + "/api/chat",
        json={"model": "qwen3:8b", "messages": [{"role": "user", "content": "x"}], "stream": False},
    )
    assert response.status_code == 200
    assert response.headers["X-Claw-Backend"] == "sim"
    assert response.headers["X-Claw-Model"] == "qwen3:8b"
    assert demo.ledger.get(response.headers["X-Claw-Request-Id"]) is not None


def test_stream_is_relayed_chunk_by_chunk(demo):
    """Each NDJSON line arrives as its own object, in order, ending with the final stats chunk."""
    body = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "stream please"}]}
    with httpx.stream("POST", demo.gateway_url + "/api/chat", json=body) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) > 3
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    assert lines[-1]["eval_count"] == len(lines) - 1


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{not json", "invalid JSON body"),
        (b"", "missing request body"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"messages": []}', "model is required"),
    ],
)
def test_malformed_requests_get_ollama_shaped_400(demo, payload, message):
    response = httpx.post(demo.gateway_url + "/api/chat", content=payload)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_malformed_openai_request_gets_openai_shaped_400(demo):
    response = httpx.post(demo.gateway_url + "/v1/chat/completions", content=b"{oops")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_status_and_summary_use_spec_field_names(demo, ol):
    ol.chat(model="qwen3:8b", messages=[{"role": "user", "content": "b"}])
    final_records(demo, 1)
    status = httpx.get(demo.gateway_url + "/claw/v1/status").json()
    assert status["governor"]["state"] in ("off", "active", "idle_pending", "downclocked")
    assert status["in_flight"] == 0
    assert status["gpus"][0]["power_w"] > 0
    summary = httpx.get(demo.gateway_url + "/claw/v1/summary").json()
    assert summary["schema"] == "claw.summary/1"
    for key in (
        "session",
        "gpus",
        "energy",
        "tokens",
        "efficiency",
        "latency_ms",
        "ttft_ms",
        "requests",
        "by_model",
        "by_agent",
        "governor",
        "alerts",
    ):
        assert key in summary
    energy = summary["energy"]
    buckets = ("active_j", "load_j", "unmetered_j", "idle_j", "pending_j")
    assert sum(energy[key] for key in buckets) == pytest.approx(energy["total_j"], abs=0.01)
    assert summary["requests"]["ok"] == 1 and summary["tokens"]["completion"] > 0
    assert summary["efficiency"]["tokens_per_joule"] > 0


def test_session_energy_is_conserved_across_many_requests(demo, ol):
    for i in range(4):
        ol.chat(model="qwen3:8b", messages=[{"role": "user", "content": f"q{i}"}])
    records = final_records(demo, 4)
    totals = demo.ledger.totals()
    attributed = sum(r.energy_j + r.load_j for r in records)
    unattributed = totals["unmetered_j"] + totals["idle_j"] + totals["pending_j"]
    assert attributed + unattributed == pytest.approx(totals["total_j"], rel=1e-9)
    assert totals["active_j"] > 0 and totals["idle_j"] > 0


def test_client_disconnect_mid_stream_is_recorded_as_cancelled(demo):
    body = {
        "model": "qwen3:32b",
        "messages": [{"role": "user", "content": "a long answer please"}],
        "options": {"num_predict": 2000},
    }
    with httpx.stream("POST", demo.gateway_url + "/api/chat", json=body) as response:
        for _ in response.iter_lines():
            break
    record = wait_until(lambda: next((r for r in demo.ledger.records() if r.status != "active"), None))
    assert record.status == "cancelled"
    wait_until(lambda: demo.ledger.in_flight() == 0)
    assert all(b.in_flight == 0 for b in demo.backends)
