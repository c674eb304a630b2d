"""Random JSON documents and random bytes posted to every endpoint: the gateway never answers 5xx of its own, stays
up, and loses nothing it already recorded."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_until
from tests.gateway_support import SimBackends, chat_body, start_gateway

POST_PATHS = (
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/create",
    "/api/pull",
    "/api/copy",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/claw/v1/governor",
)
OTHER = (("DELETE", "/api/delete"), ("GET", "/api/tags"), ("GET", "/v1/models"), ("GET", "/claw/v1/requests"))
MODELS = st.sampled_from(["qwen3:8b", "llama3.2:3b", "nomic-embed-text", "no-such-model", "", "../x", 5, None])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# documents shaped like requests, with fields of any kind: they reach deeper than random objects would
requests = st.fixed_dictionaries(
    {"model": MODELS, "stream": st.just(False)},
    optional={
        "messages": json_values | st.lists(st.fixed_dictionaries({"role": json_values, "content": json_values})),
        "prompt": json_values,
        "input": json_values,
        "options": st.dictionaries(st.sampled_from(["temperature", "num_ctx", "stop", "top_k", "x"]), json_values),
        "max_tokens": json_values,
        "n": json_values,
        "tools": json_values,
        "response_format": json_values,
        "context": json_values,
        "format": json_values,
        "from": json_values,
        "enabled": json_values,
    },
)
bodies = st.one_of(
    requests.map(lambda doc: json.dumps(doc).encode()),
    json_values.map(lambda doc: json.dumps(doc).encode()),
    st.binary(max_size=300),
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with SimBackends([{}]) as sims:
        runner = start_gateway(tmp_path_factory.mktemp("fuzz"), sims, retries=0, max_body_bytes=64 * 1024)
        client = httpx.Client(base_url=runner.session.gateway_url, timeout=30)
        try:
            yield runner.session, client
        finally:
            client.close()
            runner.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, len(POST_PATHS) + len(OTHER) - 1), body=bodies)
def test_no_input_makes_the_gateway_fail(gateway, index, body):
    session, client = gateway
    before = {r.id: r.status for r in session.ledger.records() if r.status != "active"}
    method, path = ("POST", POST_PATHS[index]) if index < len(POST_PATHS) else OTHER[index - len(POST_PATHS)]
    response = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    if response.status_code >= 500:
        # only a failure the backend itself reported may come back as a 5xx, relayed as such
        assert response.status_code in (502, 503, 504) or "X-Claw-Backend" in response.headers, response.text
        assert "internal gateway error" not in response.text
    assert client.get("/").status_code == 200  # still up
    after = {r.id: r.status for r in session.ledger.records()}
    assert all(after.get(request_id) == status for request_id, status in before.items())  # nothing lost


def test_the_gateway_still_answers_after_the_fuzz(gateway):
    session, client = gateway
    # the fuzz may have deleted or replaced models through the management endpoints: bring one back first
    pulled = client.post("/api/pull", json={"model": "llama3.2:3b", "stream": False})
    assert pulled.status_code == 200
    answer = client.post("/api/chat", json=chat_body("still there?", model="llama3.2:3b", stream=False))
    assert answer.status_code == 200 and answer.json()["done"]
    request_id = answer.headers["X-Claw-Request-Id"]
    record = wait_until(lambda: (r := session.ledger.get(request_id)) is not None and r.status != "active" and r, 30)
    assert record.status == "ok"
