"""The SQLite session store: crash safety (kill -9 loses at most about a second), retention, old stores, readers."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from claw_tui.ledger import RequestRecord
from claw_tui.store import (
    SessionStore,
    StoreError,
    connect,
    list_sessions,
    load_session,
    record_from_json,
)
from claw_tui.summary import summary_from_stored
from tests.conftest import demo_config, start_demo_session, wait_until

DAY = 86400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_kill_9_loses_at_most_about_a_second(tmp_path):
    db = tmp_path / "sessions.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npath = "{db}"\n[telemetry]\npoll_interval_s = 0.05\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "claw_tui", "serve", "--demo", "--port", str(port), "--sim-speed", "20"],
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, CLAW_CONFIG=str(config)),
    )
    try:

        def up():
            try:
                return httpx.get(url + "/api/version", timeout=1).status_code == 200
            except httpx.HTTPError:
                return process.poll() is not None

        wait_until(up, timeout=30)
        finished: list[tuple[str, float]] = []
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            response = httpx.post(
                url + "/api/chat",
                timeout=30,
                json={"model": "qwen3:8b", "stream": False, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.status_code == 200
            finished.append((response.headers["x-claw-request-id"], time.time()))
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    stored = load_session(db)
    saved = {r.id for r in stored.records}
    older = [rid for rid, at in finished if at < killed_at - 1.0]
    assert len(older) >= 3
    assert set(older) <= saved  # everything that finished over a second before the kill is there
    assert all(r.energy_j > 0 and r.status == "ok" for r in stored.records)
    assert stored.ended_at is None and stored.state(now=killed_at + 10) == "crashed"
    assert stored.telemetry and stored.telemetry[-1]["ts"] > killed_at - 2.0  # 1 Hz rows up to the end
    assert stored.stats_at is not None and stored.stats_at > killed_at - 2.0
    summary = summary_from_stored(stored)
    assert summary["requests"]["total"] == len(stored.records)
    assert summary["energy"]["total_j"] > summary["energy"]["active_j"] > 0
    assert summary["session"]["state"] == "crashed"


def make_old_session(db, days_ago: float) -> str:
    store = SessionStore(db)
    store.start(demo=True, started_at=time.time() - days_ago * DAY)
    record = RequestRecord(
        id=f"old{days_ago}",
        model="m",
        endpoint="/api/chat",
        status="ok",
        t_arrival=time.time() - days_ago * DAY,
        t_end=time.time() - days_ago * DAY + 1,
    )
    store.save_request(record)
    store.save_event("governor.downclock", {"mhz": 345})
    store.stop()
    return store.session_id


def test_retention_prunes_old_sessions_at_start(tmp_path):
    db = tmp_path / "sessions.db"
    old = make_old_session(db, days_ago=40)
    recent = make_old_session(db, days_ago=2)
    config = demo_config()
    config.store.retention_days = 30
    runner = start_demo_session(tmp_path, config)
    try:
        wait_until(lambda: len(list_sessions(db)) == 2, timeout=10)
    finally:
        runner.stop()
    ids = {row["id"] for row in list_sessions(db)}
    assert old not in ids and recent in ids and runner.session.id in ids
    conn = sqlite3.connect(db)
    for table in ("requests", "events", "telemetry"):
        assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE session_id = ?", (old,)).fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM requests WHERE session_id = ?", (recent,)).fetchone()[0] == 1


def test_retention_zero_keeps_everything(tmp_path):
    db = tmp_path / "sessions.db"
    old = make_old_session(db, days_ago=400)
    config = demo_config()
    config.store.retention_days = 0
    runner = start_demo_session(tmp_path, config)
    runner.stop()
    assert old in {row["id"] for row in list_sessions(db)}


def test_a_store_from_before_the_stats_column_still_loads(tmp_path):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE sessions (id TEXT PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, host TEXT,
                               demo INTEGER NOT NULL DEFAULT 0, info TEXT);
        CREATE TABLE requests (session_id TEXT NOT NULL, id TEXT NOT NULL, t_arrival REAL NOT NULL, model TEXT,
                               agent TEXT, status TEXT, record TEXT NOT NULL, PRIMARY KEY (session_id, id));
        CREATE TABLE telemetry (session_id TEXT NOT NULL, ts REAL NOT NULL, gpu INTEGER NOT NULL, power_w REAL,
                                energy_j REAL, sm_clock_mhz INTEGER, mem_clock_mhz INTEGER, util_pct REAL,
                                temp_c REAL, vram_used_mib REAL);
        CREATE TABLE events (session_id TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL, data TEXT);
    """)
    record = RequestRecord(
        id="r1",
        model="qwen3:8b",
        endpoint="/api/chat",
        status="ok",
        completion_tokens=10,
        energy_j=20.0,
        t_arrival=1000.5,
        t_upstream_start=1000.5,
        t_end=1001.5,
    )
    conn.execute("INSERT INTO sessions VALUES ('s1', 1000, 1010, 'box', 0, '{}')")
    conn.execute(
        "INSERT INTO requests VALUES ('s1', 'r1', 1000.5, 'qwen3:8b', NULL, 'ok', ?)", (json.dumps(record.to_json()),)
    )
    conn.executemany(
        "INSERT INTO telemetry VALUES ('s1', ?, 0, ?, ?, 1980, 3201, 0, 30, 500)",
        [(1000 + t, 100.0, 5000.0 + 100 * t) for t in range(11)],
    )
    conn.commit()
    conn.close()
    stored = load_session(db, "s1")
    assert stored.stats is None
    summary = summary_from_stored(stored)
    assert summary["session"]["approximate"] is True
    assert summary["energy"]["total_j"] == pytest.approx(1000.0)
    assert summary["energy"]["counter_j"] == pytest.approx(1000.0)
    assert summary["energy"]["active_j"] == pytest.approx(20.0)
    assert summary["efficiency"]["active_tokens_per_joule"] == pytest.approx(0.5)
    connect(db).close()  # a writer adds the new columns in place
    assert {"stats", "stats_at"} <= {row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(sessions)")}


def test_records_round_trip_through_the_store_shape():
    record = RequestRecord(
        id="abc",
        model="qwen3:8b",
        endpoint="/v1/chat/completions",
        surface="openai",
        agent="support",
        backend="sim",
        status="ok",
        http_status=200,
        prompt_tokens=12,
        completion_tokens=40,
        t_arrival=100.0,
        t_queue_exit=100.001,
        t_upstream_start=100.002,
        t_first_token=100.2,
        t_end=101.0,
        server_eval_ms=700.0,
        wake_ms=1.5,
        energy_j=80.0,
        prefill_j=10.0,
        decode_j=70.0,
        energy_final=True,
    )
    assert record_from_json(json.loads(json.dumps(record.to_json()))).to_json() == record.to_json()


def test_readers_say_what_is_wrong(tmp_path):
    with pytest.raises(StoreError, match="no session store"):
        load_session(tmp_path / "missing.db")
    db = tmp_path / "sessions.db"
    connect(db).close()
    with pytest.raises(StoreError, match="no sessions yet"):
        load_session(db)
    first = make_old_session(db, 1)
    second = make_old_session(db, 0.5)
    common = os.path.commonprefix([first, second])  # noqa: RUF071 - ids share a textual prefix
    with pytest.raises(StoreError, match="matches several"):
        load_session(db, common[:4])
    with pytest.raises(StoreError, match="no session 'zzz'"):
        load_session(db, "zzz")
    assert load_session(db).id == second  # the newest by default
    assert load_session(db, first).id == first
    (tmp_path / "junk.db").write_text("this is not a database")
    with pytest.raises(StoreError, match="cannot read"):
        load_session(tmp_path / "junk.db")
