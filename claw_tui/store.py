"""The SQLite session store (WAL): sessions, request records and 1 Hz telemetry.

Writes go through a queue to one writer thread that commits at least every `flush_interval_s`, so a crash loses
at most about a second and nothing on the gateway's hot path waits for the disk.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import platformdirs

from claw_tui.ledger import RequestRecord
from claw_tui.telemetry.types import GpuSnapshot

log = logging.getLogger(__name__)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    host TEXT,
    demo INTEGER NOT NULL DEFAULT 0,
    info TEXT
);
CREATE TABLE IF NOT EXISTS requests (
    session_id TEXT NOT NULL,
    id TEXT NOT NULL,
    t_arrival REAL NOT NULL,
    model TEXT,
    agent TEXT,
    status TEXT,
    record TEXT NOT NULL,
    PRIMARY KEY (session_id, id)
);
CREATE INDEX IF NOT EXISTS requests_by_session ON requests(session_id, t_arrival);
CREATE TABLE IF NOT EXISTS telemetry (
    session_id TEXT NOT NULL,
    ts REAL NOT NULL,
    gpu INTEGER NOT NULL,
    power_w REAL,
    energy_j REAL,
    sm_clock_mhz INTEGER,
    mem_clock_mhz INTEGER,
    util_pct REAL,
    temp_c REAL,
    vram_used_mib REAL
);
CREATE INDEX IF NOT EXISTS telemetry_by_session ON telemetry(session_id, ts);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT
);
"""

_STOP = object()


def default_store_path() -> Path:
    return platformdirs.user_data_path("claw") / "sessions.db"


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA_SQL)
    return conn


class SessionStore:
    def __init__(self, path: Path | None = None, *, flush_interval_s: float = 0.5) -> None:
        self.path = Path(path) if path else default_store_path()
        self.flush_interval_s = flush_interval_s
        self.session_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.started_at = time.time()
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.error: str | None = None

    def start(self, *, demo: bool, info: dict | None = None) -> None:
        self._conn = connect(self.path)
        with self._conn:
            self._conn.execute(
                "INSERT INTO sessions (id, started_at, host, demo, info) VALUES (?, ?, ?, ?, ?)",
                (self.session_id, self.started_at, socket.gethostname(), int(demo), json.dumps(info or {})),
            )
        self._thread = threading.Thread(target=self._writer, name="claw-store", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(("end", time.time()))
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- producers (any thread) ------------------------------------------------------------------------------
    def save_request(self, record: RequestRecord) -> None:
        self._queue.put(("request", record.id, record.t_arrival, record.model, record.agent, record.status,
                         json.dumps(record.to_json())))

    def save_telemetry(self, snapshots: list[GpuSnapshot]) -> None:
        rows = [
            (s.ts, s.index, s.power_w, s.energy_j, s.sm_clock_mhz, s.mem_clock_mhz, s.util_pct, s.temp_c,
             s.vram_used_mib)
            for s in snapshots
        ]
        self._queue.put(("telemetry", rows))

    def save_event(self, kind: str, data: dict) -> None:
        self._queue.put(("event", time.time(), kind, json.dumps(data)))

    # ---- the writer thread ---------------------------------------------------------------------------------------
    def _writer(self) -> None:
        conn = self._conn
        deadline = time.monotonic() + self.flush_interval_s
        pending = 0
        while True:
            try:
                item = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._commit(conn)
                return
            if item is not None:
                self._write(conn, item)
                pending += 1
            if time.monotonic() >= deadline:
                if pending:
                    self._commit(conn)
                    pending = 0
                deadline = time.monotonic() + self.flush_interval_s

    def _write(self, conn: sqlite3.Connection, item: tuple) -> None:
        kind, *values = item
        try:
            if kind == "request":
                conn.execute(
                    "INSERT OR REPLACE INTO requests (session_id, id, t_arrival, model, agent, status, record) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.session_id, *values),
                )
            elif kind == "telemetry":
                conn.executemany(
                    "INSERT INTO telemetry (session_id, ts, gpu, power_w, energy_j, sm_clock_mhz, mem_clock_mhz,"
                    " util_pct, temp_c, vram_used_mib) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(self.session_id, *row) for row in values[0]],
                )
            elif kind == "event":
                conn.execute("INSERT INTO events (session_id, ts, kind, data) VALUES (?, ?, ?, ?)",
                             (self.session_id, *values))
            elif kind == "end":
                conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (values[0], self.session_id))
        except sqlite3.Error as exc:
            self.error = f"session store write failed: {exc}"
            log.error(self.error)

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            conn.commit()
        except sqlite3.Error as exc:
            self.error = f"session store commit failed: {exc}"
            log.error(self.error)
