"""/claw/v1/conversations over real HTTP: create, list, read (JSON and Markdown), replace, delete; clear errors for bad
bodies and unknown ids; conversations need an admin token when the gateway has admin tokens; they live in the
session store, apart from any session (pruning old sessions keeps them)."""

from __future__ import annotations

import httpx
import pytest

from claw_tui import store
from tests.conftest import demo_config, start_demo_session

TURN = {
    "prompt": "why is the sky blue?\n(one paragraph)",
    "answer": "Rayleigh scattering.",
    "thinking": "The user asks about the sky.",
    "state": "ok",
    "stats": "TTFT 120 ms · 40.0 tok/s",
    "prompt_tokens": 18,
    "completion_tokens": 4,
}


def conversation(**fields) -> dict:
    return {"model": "qwen3:8b", "options": {"num_ctx": 4096}, "turns": [TURN], **fields}


@pytest.fixture
def guarded(tmp_path):
    runner = start_demo_session(tmp_path, demo_config(tokens=["client-token"], admin_tokens=["root-token"]))
    yield runner.session
    runner.stop()


def test_create_list_read_replace_and_delete(demo):
    url = demo.gateway_url + "/claw/v1/conversations"
    created = httpx.post(url, json=conversation())
    assert created.status_code == 201
    body = created.json()
    conversation_id = body["id"]
    assert created.headers["location"] == f"/claw/v1/conversations/{conversation_id}"
    assert body["title"] == "why is the sky blue?" and body["session_id"] == demo.id and body["updated_at"] > 0

    listed = httpx.get(url).json()["conversations"]
    assert [(c["id"], c["title"], c["model"], c["turns"]) for c in listed] == [
        (conversation_id, "why is the sky blue?", "qwen3:8b", 1)
    ]
    assert "messages" not in listed[0] and not isinstance(listed[0]["turns"], list)  # the list is light

    read = httpx.get(f"{url}/{conversation_id}").json()
    assert read["turns"][0]["answer"] == "Rayleigh scattering." and read["options"] == {"num_ctx": 4096}

    markdown = httpx.get(f"{url}/{conversation_id}?format=md")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# why is the sky blue?")
    assert "<summary>thought for 6 words</summary>" in markdown.text and "Options: num_ctx 4096" in markdown.text

    more = dict(read, turns=[*read["turns"], {"prompt": "and at sunset?", "answer": "Red.", "state": "ok"}])
    replaced = httpx.put(f"{url}/{conversation_id}", json=more)
    assert replaced.status_code == 200 and len(replaced.json()["turns"]) == 2
    assert httpx.get(url).json()["conversations"][0]["turns"] == 2

    # PUT on a new id creates it (the console names its conversations itself).
    assert httpx.put(f"{url}/mine-1", json=conversation()).status_code == 200
    assert {c["id"] for c in httpx.get(url).json()["conversations"]} == {conversation_id, "mine-1"}
    assert httpx.get(f"{url}?limit=1").json()["conversations"][0]["id"] == "mine-1"  # newest first

    deleted = httpx.delete(f"{url}/{conversation_id}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": conversation_id}
    gone = httpx.get(f"{url}/{conversation_id}")
    assert gone.status_code == 404 and "no conversation" in gone.json()["error"]
    assert httpx.delete(f"{url}/{conversation_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"turns": []}, "needs a model"),
        (conversation(turns="nope"), "turns must be a list"),
        (conversation(turns=[{"answer": "no prompt"}]), "turn 1 needs a prompt"),
        (conversation(options={"num_ctx": -1}), "num_ctx must be a whole number above 0"),
        (conversation(options={"temperature": "hot"}), "temperature must be a number"),
        (conversation(turns=[dict(TURN, state="weird")]), "state must be one of"),
        (conversation(id="has spaces"), "letters, digits"),
        (conversation(system=3), "system must be a string"),
    ],
)
def test_bad_bodies_are_refused_with_a_sentence(demo, body, message):
    response = httpx.post(demo.gateway_url + "/claw/v1/conversations", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert httpx.get(demo.gateway_url + "/claw/v1/conversations").json()["conversations"] == []  # nothing kept


def test_unknown_ids_methods_formats_and_mismatched_ids(demo):
    url = demo.gateway_url + "/claw/v1/conversations"
    assert httpx.get(f"{url}/nothing-here").status_code == 404
    assert httpx.get(f"{url}/bad%20id").status_code == 404
    response = httpx.post(f"{url}/abc", json=conversation())
    assert response.status_code == 405 and "use DELETE, GET, PUT" in response.json()["error"]
    assert httpx.delete(url).status_code == 405
    httpx.put(f"{url}/abc", json=conversation())
    assert httpx.get(f"{url}/abc?format=pdf").status_code == 400
    mismatch = httpx.put(f"{url}/abc", json=conversation(id="other"))
    assert mismatch.status_code == 400 and "is not the path's" in mismatch.json()["error"]
    not_json = httpx.put(f"{url}/abc", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert httpx.get(f"{url}?limit=x").status_code == 400


def test_conversations_need_an_admin_token_when_the_gateway_has_them(guarded):
    url = guarded.gateway_url + "/claw/v1/conversations"
    admin = {"Authorization": "Bearer root-token"}
    client = {"Authorization": "Bearer client-token"}
    assert httpx.get(url).status_code == 401
    for method, path, body in (("GET", url, None), ("POST", url, conversation()), ("GET", f"{url}/x", None)):
        refused = httpx.request(method, path, json=body, headers=client)
        assert refused.status_code == 403 and "needs an admin token" in refused.json()["error"]
    created = httpx.post(url, json=conversation(), headers=admin)
    assert created.status_code == 201
    assert httpx.get(url, headers=admin).json()["conversations"][0]["id"] == created.json()["id"]


def test_without_a_store_the_service_says_so(tmp_path):
    runner = start_demo_session(tmp_path, use_store=False)
    try:
        response = httpx.get(runner.session.gateway_url + "/claw/v1/conversations")
        assert response.status_code == 503 and "without a session store" in response.json()["error"]
    finally:
        runner.stop()


def test_conversations_outlive_pruned_sessions(tmp_path):
    path = tmp_path / "s.db"
    saved = store.SessionStore(path)
    saved.start(demo=True, started_at=1_000.0)
    saved.stop(ended_at=1_100.0)
    store.save_conversation(path, {"id": "c1", "model": "qwen3:8b", "title": "old", "turns": [], "session_id": "x"})
    conn = store.connect(path)
    try:
        assert store.prune(conn, retention_days=1) == 1  # the session (from 1970) goes
    finally:
        conn.close()
    assert store.list_sessions(path) == []
    assert [c["id"] for c in store.list_conversations(path)] == ["c1"]


def test_a_store_made_before_conversations_gets_the_table(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, host TEXT,"
        " demo INTEGER NOT NULL DEFAULT 0, info TEXT)"
    )
    old.commit()
    old.close()
    store.save_conversation(path, {"id": "c1", "model": "m", "title": "t", "turns": []})
    assert store.load_conversation(path, "c1")["model"] == "m"
    with pytest.raises(store.ConversationNotFound, match="no conversation 'c2'"):
        store.load_conversation(path, "c2")
