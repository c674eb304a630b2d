"""claw in front of a real third-party backend: llama.cpp's OpenAI-compatible server (llama-cpp-python) on a tiny
model built by the test (tests/llama_support.py). Every other gateway test talks to claw's own simulator, written
from the same reading of the APIs as the gateway; this one checks the gateway against a server it did not write.

Both of claw's surfaces with the real SDKs: chat streamed and whole through /v1 (openai) and /api/chat (ollama),
usage, an unknown model, and a client that hangs up mid-stream.
"""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from claw_tui.config import BackendConfig, load_config
from claw_tui.session import Session, SessionOptions, SessionThread
from tests.conftest import wait_until
from tests.llama_support import MODEL_ALIAS, LlamaServer, build_tiny_model

GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    server = LlamaServer(build_tiny_model(folder / "tiny.gguf"), folder / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def claw(llama, tmp_path_factory):
    config = load_config(None)
    config.telemetry.source = "none"
    config.backends = [BackendConfig(name="llama", kind="openai", url=llama.url, health_interval_s=1.0)]
    config.gateway.retries = 0
    options = SessionOptions(listen=("127.0.0.1", 0), store_path=tmp_path_factory.mktemp("claw") / "sessions.db")
    runner = SessionThread(Session(config, options))
    runner.start()
    yield runner.session
    runner.stop()


def finished(session, request_id: str):
    return wait_until(lambda: (r := session.ledger.get(request_id)) is not None and r.status != "active" and r)


def newest_finished(session):
    return wait_until(lambda: (records := session.ledger.records()) and records[-1].status != "active" and records[-1])


def test_models_are_listed_on_both_surfaces(claw):
    models = openai.OpenAI(base_url=claw.gateway_url + "/v1", api_key="x").models.list()
    assert [m.id for m in models.data] == [MODEL_ALIAS]
    tags = ollama.Client(host=claw.gateway_url).list()
    assert [m.model for m in tags.models] == [MODEL_ALIAS]


def test_openai_chat_whole_and_streamed(claw):
    client = openai.OpenAI(base_url=claw.gateway_url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "Say something."}]
    whole = client.chat.completions.with_raw_response.create(
        model=MODEL_ALIAS, messages=messages, max_tokens=12, **GREEDY
    )
    completion = whole.parse()
    assert completion.choices[0].message.content and completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 12 and completion.usage.prompt_tokens > 0
    assert whole.headers["x-claw-backend"] == "llama"
    record = finished(claw, whole.headers["x-claw-request-id"])
    assert record.status == "ok" and record.backend == "llama"
    assert (record.prompt_tokens, record.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )

    chunks = list(
        client.chat.completions.create(model=MODEL_ALIAS, messages=messages, max_tokens=8, stream=True, **GREEDY)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 8  # the tiny model's tokens are single printable bytes
    assert chunks[-1].choices[0].finish_reason == "length"
    record = newest_finished(claw)
    assert record.status == "ok" and record.stream and record.ttft_ms is not None


@pytest.mark.xfail(
    strict=True,
    reason="metering.py's SSE fast path misses llama.cpp's spaced JSON ('\"finish_reason\": \"length\"') and "
    "counts the closing chunk as a token (9 for 8); passes once SseMeter matches it",
)
def test_streamed_tokens_are_counted_once_without_a_usage_event(claw):
    # llama.cpp's server sends no usage event in streams (it ignores stream_options): claw counts the deltas
    client = openai.OpenAI(base_url=claw.gateway_url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": "Count."}]
    chunks = list(client.chat.completions.create(model=MODEL_ALIAS, messages=messages, max_tokens=8, stream=True))
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 8
    assert newest_finished(claw).completion_tokens == 8


def test_ollama_chat_whole_and_streamed(claw):
    client = ollama.Client(host=claw.gateway_url)
    messages = [{"role": "user", "content": "Say something."}]
    options = {"num_predict": 10, **GREEDY}
    whole = client.chat(model=MODEL_ALIAS, messages=messages, options=options, stream=False)
    assert whole.done and whole.message.role == "assistant" and whole.message.content
    assert whole.eval_count == 10
    parts = list(client.chat(model=MODEL_ALIAS, messages=messages, options=options, stream=True))
    assert parts[-1].done and len("".join(p.message.content for p in parts)) == 10
    assert sum(1 for p in parts if p.message.content) == 10  # one chunk per token
    record = newest_finished(claw)
    assert record.status == "ok" and record.completion_tokens == 10 and record.surface == "ollama"


@pytest.mark.xfail(
    strict=True,
    reason="the Ollama surface over an OpenAI-compatible backend reads the answer as a stream; llama.cpp sends no "
    "usage in streams, so prompt_eval_count is missing; passes once the translation asks for usage another way",
)
def test_ollama_answers_over_llama_cpp_say_how_long_the_prompt_was(claw):
    whole = ollama.Client(host=claw.gateway_url).chat(
        model=MODEL_ALIAS, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2}, stream=False
    )
    assert whole.prompt_eval_count and whole.prompt_eval_count > 0


def test_an_unknown_model_is_a_404_on_both_surfaces(claw):
    client = openai.OpenAI(base_url=claw.gateway_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in caught.value.message
    with pytest.raises(ollama.ResponseError) as native:
        ollama.Client(host=claw.gateway_url).chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert native.value.status_code == 404


def test_a_client_that_hangs_up_mid_stream_is_recorded_cancelled(claw):
    body = {
        "model": MODEL_ALIAS,
        "messages": [{"role": "user", "content": "Go on and on."}],
        "max_tokens": 900,
        "stream": True,
    }
    with httpx.stream("POST", claw.gateway_url + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        request_id = response.headers["x-claw-request-id"]
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
    record = finished(claw, request_id)
    assert record.status == "cancelled" and record.http_status == 499
    assert record.completion_tokens < 900
    # llama.cpp is still answering others
    again = openai.OpenAI(base_url=claw.gateway_url + "/v1", api_key="x").chat.completions.create(
        model=MODEL_ALIAS, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert again.choices[0].message.content is not None
