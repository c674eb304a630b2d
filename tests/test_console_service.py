"""The service's console API over real HTTP: /claw/v1/events (ids, resume, resync, a reader that never reads),
/claw/v1/telemetry, /claw/v1/agents (admin token, comments kept in the config file), summary formats, status."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest

from claw_tui.config import load_config
from claw_tui.console.events import SseParser
from tests.conftest import demo_config, start_demo_session, wait_until

CONFIG_TEXT = """\
# the service's config: this comment must survive agent edits
[gateway]
listen = "127.0.0.1:0"
admin_tokens = ["root-token"]
tokens = ["client-token"]

[[agents]]
name = "support"  # the help desk
model = "qwen3:8b"
"""


def read_events(url: str, headers: dict | None = None, until=lambda events: False, timeout: float = 10.0):
    """Read /claw/v1/events until `until(events)` holds; returns the events read."""
    events = []
    parser = SseParser()
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url + "/claw/v1/events", headers=headers or {}, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            event = parser.feed(line)
            if event is not None:
                events.append(event)
                if until(events):
                    return events
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"the events stream did not deliver in time: {[e.kind for e in events]}")


def chat(url: str, model: str = "qwen3:8b", headers: dict | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "stream": False}
    return httpx.post(url + "/api/chat", json=body, headers=headers or {}, timeout=30)


def test_status_says_it_is_claw(demo):
    status = httpx.get(demo.gateway_url + "/claw/v1/status").json()
    assert status["service"] == "claw" and status["face"] == "serve"
    assert status["session"]["id"] == demo.id and status["pid"] > 0 and status["uptime_s"] >= 0
    assert status["version"] and isinstance(status["last_event_id"], int)


def test_events_carry_a_request_from_open_to_final_energy(demo):
    url = demo.gateway_url
    start = httpx.get(url + "/claw/v1/status").json()["last_event_id"]
    assert chat(url).status_code == 200

    def finished(events):
        return any(e.kind == "request.finished" for e in events)

    events = read_events(url, {"Last-Event-ID": str(start)}, until=finished)
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] == start + 1
    kinds = [e.kind for e in events if e.kind.startswith("request.")]
    assert kinds == ["request.opened", "request.first_token", "request.finished"]
    final = next(e.data for e in events if e.kind == "request.finished")
    assert final["status"] == "ok" and final["energy_final"] and final["energy_j"] > 0
    assert any(e.kind == "telemetry" and e.data["gpus"][0]["samples"] for e in events)


def test_last_event_id_resumes_after_a_drop_and_an_old_id_gets_a_resync(demo):
    url = demo.gateway_url
    first = read_events(url, until=lambda events: len(events) >= 5)
    seen = first[2].id
    assert chat(url).status_code == 200
    resumed = read_events(
        url, {"Last-Event-ID": str(seen)}, until=lambda ev: any(e.kind == "request.finished" for e in ev)
    )
    assert resumed[0].id == seen + 1  # nothing lost, nothing repeated
    assert [e.id for e in resumed] == list(range(seen + 1, seen + 1 + len(resumed)))
    from_another_run = read_events(url, {"Last-Event-ID": "99999999"}, until=lambda events: True)
    assert from_another_run[0].kind == "resync"
    bad = httpx.get(url + "/claw/v1/events", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


def test_a_reader_that_never_reads_gets_a_resync_and_requests_keep_flowing(demo):
    url = demo.gateway_url
    demo.bus.queue_size = 32
    host, port = url.removeprefix("http://").split(":")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((host, int(port)))
    stuck.sendall(f"GET /claw/v1/events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        wait_until(lambda: demo.bus.subscribers >= 1)
        # Far more than the socket buffers hold: the service's writer for this reader is stuck...
        for _ in range(200):
            demo.bus.publish("test.filler", {"pad": "x" * 100_000})
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        # ...while the gateway answers, and the console's events go on being published.
        for _ in range(5):
            answer = client.chat.completions.create(model="qwen3:8b", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
        records = httpx.get(url + "/claw/v1/requests").json()["requests"]
        assert len(records) == 5 and all(r["status"] == "ok" for r in records)
        # The stuck reader lost its queue: when it reads again, it is told to re-read the state.
        stuck.settimeout(10)
        seen = b""
        deadline = time.monotonic() + 20
        while b"event: resync" not in seen and time.monotonic() < deadline:
            chunk = stuck.recv(1 << 20)
            if not chunk:
                break
            seen = seen[-200:] + chunk
        assert b"event: resync" in seen
    finally:
        stuck.close()


def test_telemetry_history_for_an_attaching_console(demo):
    url = demo.gateway_url
    wait_until(lambda: demo.sampler.power_trace(0, 0.0))
    time.sleep(1.0)  # a second of samples to ask for
    data = httpx.get(url + "/claw/v1/telemetry", params={"gpu": 0, "seconds": 60}).json()
    assert data["source"] == "sim" and data["state"] == "ok" and len(data["gpus"]) == 1
    gpu = data["gpus"][0]
    assert gpu["static"]["name"] and gpu["latest"]["power_w"] is not None
    timestamps = [ts for ts, _ in gpu["power"]]
    assert len(timestamps) > 20 and timestamps == sorted(timestamps)
    assert 0.015 <= (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1) <= 0.025  # the 20 ms samples
    assert gpu["recent"] and gpu["stats"]["trace"]["samples"] > 0
    assert httpx.get(url + "/claw/v1/telemetry", params={"gpu": 7}).status_code == 404
    assert httpx.get(url + "/claw/v1/telemetry", params={"seconds": "soon"}).status_code == 400
    assert httpx.get(url + "/claw/v1/telemetry", params={"seconds": -1}).status_code == 400


@pytest.mark.parametrize("fmt, media, marker", [("md", "text/markdown", "# claw"), ("csv", "text/csv", "id,")])
def test_summary_in_every_format(demo, fmt, media, marker):
    url = demo.gateway_url
    assert chat(url).status_code == 200
    response = httpx.get(url + "/claw/v1/summary", params={"format": fmt})
    assert response.status_code == 200 and response.headers["content-type"].startswith(media)
    assert marker in response.text
    assert httpx.get(url + "/claw/v1/summary", params={"format": "json"}).json()["schema"] == "claw.summary/1"
    assert httpx.get(url + "/claw/v1/summary", params={"format": "pdf"}).status_code == 400


@pytest.fixture
def guarded(tmp_path):
    path = tmp_path / "claw.toml"
    path.write_text(CONFIG_TEXT)
    config = load_config(path)
    config.telemetry.poll_interval_s = 0.05
    config.gateway.listen = "127.0.0.1:0"
    runner = start_demo_session(tmp_path, config)
    yield runner.session, path
    runner.stop()


def test_agents_crud_needs_an_admin_token_and_keeps_the_config_comments(guarded):
    session, path = guarded
    url = session.gateway_url
    admin = {"Authorization": "Bearer root-token"}
    client = {"Authorization": "Bearer client-token"}
    listed = httpx.get(url + "/claw/v1/agents", headers=client)
    assert listed.status_code == 200 and [a["name"] for a in listed.json()["agents"]] == ["support"]
    triage = {"name": "triage", "model": "qwen3:8b", "system": "Sort tickets.", "max_tokens": 64}
    assert httpx.post(url + "/claw/v1/agents", json=triage, headers=client).status_code == 403
    assert httpx.post(url + "/claw/v1/agents", json=triage).status_code == 401
    created = httpx.post(url + "/claw/v1/agents", json=triage, headers=admin)
    assert created.status_code == 201 and [a["name"] for a in created.json()["agents"]] == ["support", "triage"]
    assert httpx.post(url + "/claw/v1/agents", json=triage, headers=admin).status_code == 409
    wrong = httpx.post(url + "/claw/v1/agents", json={"name": "x", "model": 7}, headers=admin)
    assert wrong.status_code == 400 and "model" in wrong.json()["error"]
    text = path.read_text()
    assert "# the service's config: this comment must survive agent edits" in text and "# the help desk" in text
    assert [a.name for a in load_config(path).agents] == ["support", "triage"]
    # The gateway serves the new agent at once.
    assert chat(url, "triage", client).status_code == 200
    changed = httpx.put(
        url + "/claw/v1/agents", params={"name": "triage"}, json={**triage, "max_tokens": 32}, headers=admin
    )
    assert changed.status_code == 200 and load_config(path).agents[1].max_tokens == 32
    assert httpx.delete(url + "/claw/v1/agents", params={"name": "nobody"}, headers=admin).status_code == 404
    assert httpx.delete(url + "/claw/v1/agents", params={"name": "triage"}, headers=admin).status_code == 200
    assert [a.name for a in load_config(path).agents] == ["support"]
    assert "# the service's config" in path.read_text()


def test_agent_changes_are_events(guarded):
    session, _ = guarded
    url = session.gateway_url
    start = httpx.get(url + "/claw/v1/status", headers={"Authorization": "Bearer client-token"}).json()
    body = {"name": "triage", "model": "qwen3:8b"}
    assert httpx.post(url + "/claw/v1/agents", json=body, headers={"Authorization": "Bearer root-token"}).is_success
    events = read_events(
        url,
        {"Last-Event-ID": str(start["last_event_id"]), "Authorization": "Bearer client-token"},
        until=lambda ev: any(e.kind == "agents" for e in ev),
    )
    agents = next(e.data["agents"] for e in events if e.kind == "agents")
    assert [a["name"] for a in agents] == ["support", "triage"]


def test_demo_config_is_used_by_the_fixtures():
    assert demo_config().path is None  # tests never write a user's config
