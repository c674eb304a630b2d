"""The real `ollama` and `openai` SDKs against the gateway, for every endpoint they use, in front of an Ollama
backend and in front of an OpenAI-compatible backend (the gateway translates between the two surfaces)."""

from __future__ import annotations

import base64
import struct

import httpx
import ollama
import openai
import pytest

from tests.conftest import wait_until
from tests.gateway_support import SimBackends, start_gateway

KINDS = ["ollama", "openai"]


@pytest.fixture(scope="module")
def rigs(tmp_path_factory):
    """One gateway per backend kind, each in front of its own simulator."""
    with SimBackends([{}]) as ollama_sim, SimBackends([{"openai_only": True}]) as openai_sim:
        runners = {
            "ollama": start_gateway(tmp_path_factory.mktemp("ollama"), ollama_sim, kinds=["ollama"]),
            "openai": start_gateway(tmp_path_factory.mktemp("openai"), openai_sim, kinds=["openai"]),
        }
        try:
            yield {
                kind: (runner.session, sim)
                for kind, runner, sim in (
                    ("ollama", runners["ollama"], ollama_sim),
                    ("openai", runners["openai"], openai_sim),
                )
            }
        finally:
            for runner in runners.values():
                runner.stop()


@pytest.fixture(params=KINDS)
def rig(request, rigs):
    session, sim = rigs[request.param]
    return request.param, session, sim


def finished(session, request_id: str):
    def ready():
        record = session.ledger.get(request_id)
        return record if record is not None and record.status != "active" else None

    return wait_until(ready)


def last_record(session):
    """The newest request, once it has finished."""

    def ready():
        records = session.ledger.records()
        return records[-1] if records and records[-1].status != "active" else None

    return wait_until(ready)


# ---- ollama SDK ------------------------------------------------------------------------------------------------


@pytest.fixture
def ol(rig):
    return ollama.Client(host=rig[1].gateway_url)


def test_ollama_chat_stream_and_whole(rig, ol):
    _kind, session, _ = rig
    parts = list(ol.chat(model="qwen3:8b", messages=[{"role": "user", "content": "Why is the sky blue?"}], stream=True))
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert parts[-1].eval_count > 0 and parts[-1].eval_duration > 0 and parts[-1].prompt_eval_count > 0
    assert "".join(p.message.content for p in parts)
    assert all(not p.done for p in parts[:-1])
    whole = ol.chat(model="qwen3:8b", messages=[{"role": "user", "content": "Why is the sky blue?"}])
    assert whole.done and whole.message.role == "assistant" and whole.message.content
    assert whole.eval_count > 0
    record = last_record(session)
    assert record.status == "ok" and record.backend == "b0" and record.completion_tokens == whole.eval_count


def test_ollama_generate_stream_and_whole(rig, ol):
    _kind, session, _ = rig
    parts = list(ol.generate(model="qwen3:8b", prompt="Count to three", stream=True))
    assert parts[-1].done and "".join(p.response for p in parts)
    whole = ol.generate(model="qwen3:8b", prompt="Count to three", system="Be brief.")
    assert whole.done and whole.response and whole.eval_count > 0
    record = last_record(session)
    assert record.endpoint == "/api/generate" and record.completion_tokens == whole.eval_count
    assert record.ttft_ms is not None and record.ttft_ms <= record.duration_ms


def test_ollama_embed(rig, ol):
    _kind, session, _ = rig
    result = ol.embed(model="nomic-embed-text", input=["first text", "second text"])
    assert len(result.embeddings) == 2 and len(result.embeddings[0]) > 100
    assert result.embeddings[0] != result.embeddings[1]
    record = last_record(session)
    assert record.endpoint == "/api/embed" and record.status == "ok" and record.prompt_tokens > 0


def test_ollama_list_show_and_ps(rig, ol):
    _kind, _session, _ = rig
    names = {m.model for m in ol.list().models}
    assert {"qwen3:8b", "nomic-embed-text:latest"} <= names
    shown = ol.show("qwen3:8b")
    assert shown.modelinfo is not None
    ol.chat(model="llama3.2:3b", messages=[{"role": "user", "content": "load me"}])
    loaded = {m.model for m in ol.ps().models}
    assert "llama3.2:3b" in loaded


def test_ollama_model_management(rigs):
    session, _sim = rigs["ollama"]
    ol = ollama.Client(host=session.gateway_url)
    progress = list(ol.pull("llama3.2:3b", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    statuses = [
        p.status
        for p in ol.create(
            model="llama-terse", from_="llama3.2:3b", system="Be terse.", parameters={"temperature": 0.2}, stream=True
        )
    ]
    assert statuses[-1] == "success"
    shown = ol.show("llama-terse")
    assert "Be terse." in shown.modelfile and "temperature" in shown.parameters
    # a freshly created model is served at once (the gateway refreshes its model list after a change)
    assert ol.chat(model="llama-terse", messages=[{"role": "user", "content": "hi"}]).message.content
    ol.copy("llama-terse", "llama-copy")
    assert {m.model for m in ol.list().models} >= {"llama-terse:latest", "llama-copy:latest"}
    ol.delete("llama-copy")
    assert "llama-copy:latest" not in {m.model for m in ol.list().models}
    with pytest.raises(ollama.ResponseError) as caught:
        ol.delete("llama-copy")
    assert caught.value.status_code == 404


def test_model_management_on_an_openai_backend_says_why_not(rigs):
    session, _ = rigs["openai"]
    response = httpx.post(session.gateway_url + "/api/pull", json={"model": "qwen3:8b"})
    assert response.status_code == 501
    assert "OpenAI-compatible" in response.json()["error"]


def test_ollama_unknown_model_is_404(rig, ol):
    with pytest.raises(ollama.ResponseError) as caught:
        ol.chat(model="missing:7b", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'missing:7b' not found"


# ---- openai SDK ------------------------------------------------------------------------------------------------


@pytest.fixture
def oai(rig):
    client = openai.OpenAI(base_url=rig[1].gateway_url + "/v1", api_key="unused", max_retries=0)
    yield client
    client.close()


def test_openai_chat_whole(rig, oai):
    _kind, session, _ = rig
    completion = oai.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "Say hi"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant" and completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 0
    record = last_record(session)
    assert record.surface == "openai" and record.status == "ok"
    assert record.completion_tokens == completion.usage.completion_tokens


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_chat_stream(rig, oai, include_usage):
    _kind, session, _ = rig
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        oai.chat.completions.create(
            model="qwen3:8b", stream=True, messages=[{"role": "user", "content": "Tell me about GPUs"}], **options
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[-1] in ("stop", "length")
    usage = [c for c in chunks if c.usage is not None]
    record = last_record(session)
    if include_usage:
        assert len(usage) == 1 and usage[0].choices == []
        assert record.completion_tokens == usage[0].usage.completion_tokens
    else:
        assert usage == []
        assert record.completion_tokens > 0  # metered all the same (claw asks upstream for usage)
    assert record.ttft_ms is not None


def test_openai_models(rig, oai):
    ids = {m.id for m in oai.models.list()}
    assert {"qwen3:8b", "qwen3:32b"} <= ids
    assert oai.models.retrieve("qwen3:8b").id == "qwen3:8b"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope:1b")


def test_openai_embeddings(rig, oai):
    _kind, _session, _ = rig
    result = oai.embeddings.create(model="nomic-embed-text", input=["alpha", "beta"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 100
    assert result.usage.prompt_tokens > 0
    encoded = oai.embeddings.create(model="nomic-embed-text", input="alpha", encoding_format="base64")
    raw = encoded.data[0].embedding
    if isinstance(raw, str):  # the SDK hands base64 through when asked for it explicitly
        raw = list(struct.unpack(f"<{len(base64.b64decode(raw)) // 4}f", base64.b64decode(raw)))
    assert raw == pytest.approx(result.data[0].embedding, rel=1e-5, abs=1e-6)


def test_openai_unknown_model_is_404_in_openai_shape(rig, oai):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="nope:1b", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    assert caught.value.body["type"] == "not_found_error"


def test_headers_name_request_backend_and_model(rig):
    _kind, session, _ = rig
    response = httpx.post(
        session.gateway_url + "/api/chat",
        json={"model": "qwen3:8b", "messages": [{"role": "user", "content": "x"}], "stream": False},
    )
    assert response.status_code == 200
    assert response.headers["X-Claw-Backend"] == "b0"
    assert response.headers["X-Claw-Model"] == "qwen3:8b"
    assert finished(session, response.headers["X-Claw-Request-Id"]).status == "ok"


def test_root_and_version(rig):
    _kind, session, _ = rig
    root = httpx.get(session.gateway_url + "/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert httpx.head(session.gateway_url + "/").status_code == 200
    version = httpx.get(session.gateway_url + "/api/version").json()["version"]
    assert version.count(".") == 2
