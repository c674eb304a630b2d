"""The SQLite session store (WAL): sessions, request records, 1 Hz telemetry, governor events, session stats, and
the console's chat conversations (not tied to a session: a conversation outlives the session it started in, and
pruning old sessions keeps it).

Writes go through a queue to one writer thread that commits at least every `flush_interval_s`, so a crash loses
at most about a second and nothing on the gateway's hot path waits for the disk. The session's running totals
(energy, governor, alerts) are saved once a second in `sessions.stats`, so `claw export` can rebuild the summary of
any past session, one that crashed included. Readers (`claw export`) open their own connection: WAL lets them read
while a live claw writes.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from claw_tui.records import MODEL_EVENT_KINDS, REQUEST, RequestRecord
from claw_tui.request_pages import RequestQuery
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
CREATE INDEX IF NOT EXISTS events_by_session ON events(session_id, ts);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    session_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_update ON conversations(updated_at);
"""
# Columns added after the first release: (table, column, SQL type).
MIGRATIONS = (("sessions", "stats", "TEXT"), ("sessions", "stats_at", "REAL"), ("requests", "kind", "TEXT"))

T = TypeVar("T")

_STOP: tuple[str] = ("stop",)  # told apart by identity: no write is this very tuple
DAY_S = 86400.0
LIVE_WITHIN_S = 5.0  # a session without an end whose stats are this fresh is still running


class StoreError(Exception):
    """The store cannot be read, or has no such session."""


def default_store_path() -> Path:
    return platformdirs.user_data_path("claw") / "sessions.db"


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA_SQL)
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    for table, column, sql_type in MIGRATIONS:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
    conn.commit()


def prune(conn: sqlite3.Connection, retention_days: float, now: float | None = None) -> int:
    """Delete sessions that started more than `retention_days` ago, with their rows; returns how many went."""
    if retention_days <= 0:
        return 0
    cutoff = (now if now is not None else time.time()) - retention_days * DAY_S
    old = [row[0] for row in conn.execute("SELECT id FROM sessions WHERE started_at < ?", (cutoff,))]
    with conn:
        for session_id in old:
            for table in ("requests", "telemetry", "events"):
                conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    return len(old)


def prune_rows(conn: sqlite3.Connection, session_id: str, cutoff: float) -> int:
    """Delete a running session's rows from before `cutoff` (its totals stay in the session's saved stats)."""
    with conn:
        removed = conn.execute(
            "DELETE FROM requests WHERE session_id = ? AND t_arrival < ?", (session_id, cutoff)
        ).rowcount
        removed += conn.execute("DELETE FROM telemetry WHERE session_id = ? AND ts < ?", (session_id, cutoff)).rowcount
        removed += conn.execute("DELETE FROM events WHERE session_id = ? AND ts < ?", (session_id, cutoff)).rowcount
    return removed


ROW_PRUNE_INTERVAL_S = 3600.0


def session_id_at(started_at: float) -> str:
    """A session's id: the local time it started (so ids sort as sessions started) and a random suffix."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(started_at)) + "-" + uuid.uuid4().hex[:6]


class SessionStore:
    def __init__(
        self,
        path: Path | None = None,
        *,
        flush_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path) if path else default_store_path()
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.retention_days = 0.0
        self._pruned_rows_at = clock()
        self.session_id = session_id_at(clock())
        self.started_at = clock()
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()  # (kind, values...) for the writer thread
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.error: str | None = None
        self.pruned = 0

    def start(
        self,
        *,
        demo: bool,
        info: dict[str, Any] | None = None,
        retention_days: float = 0,
        started_at: float | None = None,
    ) -> None:
        if started_at is not None:
            self.started_at = started_at
            self.session_id = session_id_at(started_at)
        self._conn = conn = connect(self.path)
        with conn:
            conn.execute(
                "INSERT INTO sessions (id, started_at, host, demo, info) VALUES (?, ?, ?, ?, ?)",
                (
                    self.session_id,
                    self.started_at,
                    socket.gethostname(),
                    int(demo),
                    json.dumps({**(info or {}), "pid": os.getpid()}),
                ),
            )
        self.retention_days = retention_days
        if retention_days > 0:
            self._queue.put(("prune", retention_days))
        self._thread = threading.Thread(target=self._writer, args=(conn,), name="claw-store", daemon=True)
        self._thread.start()

    def stop(self, ended_at: float | None = None) -> None:
        if self._thread is None:
            return
        self._queue.put(("end", ended_at or time.time()))
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def backlog(self) -> int:
        """Writes queued for the writer thread and not yet taken (telemetry rows keep coming once a second)."""
        return self._queue.qsize()

    # ---- producers (any thread) ------------------------------------------------------------------------------
    def save_request(self, record: RequestRecord) -> None:
        self._queue.put(
            (
                "request",
                record.id,
                record.t_arrival,
                record.model,
                record.agent,
                record.status,
                record.kind,
                json.dumps(record.to_json()),
            )
        )

    def save_telemetry(self, snapshots: list[GpuSnapshot]) -> None:
        rows = [
            (
                s.ts,
                s.index,
                s.power_w,
                s.energy_j,
                s.sm_clock_mhz,
                s.mem_clock_mhz,
                s.util_pct,
                s.temp_c,
                s.vram_used_mib,
            )
            for s in snapshots
        ]
        self._queue.put(("telemetry", rows))

    def save_event(self, kind: str, data: dict[str, Any], ts: float | None = None) -> None:
        self._queue.put(("event", ts if ts is not None else time.time(), kind, json.dumps(data)))

    def save_stats(self, stats: dict[str, Any], ts: float | None = None) -> None:
        """The session's running totals (energy, governor, alerts); the newest replaces the one before."""
        self._queue.put(("stats", json.dumps(stats), ts if ts is not None else time.time()))

    # ---- the writer thread ---------------------------------------------------------------------------------------
    def _writer(self, conn: sqlite3.Connection) -> None:
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
                self._prune_old_rows(conn)

    def _write(self, conn: sqlite3.Connection, item: tuple[Any, ...]) -> None:
        kind, *values = item
        try:
            if kind == "request":
                conn.execute(
                    "INSERT OR REPLACE INTO requests (session_id, id, t_arrival, model, agent, status, kind, record) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.session_id, *values),
                )
            elif kind == "telemetry":
                conn.executemany(
                    "INSERT INTO telemetry (session_id, ts, gpu, power_w, energy_j, sm_clock_mhz, mem_clock_mhz,"
                    " util_pct, temp_c, vram_used_mib) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(self.session_id, *row) for row in values[0]],
                )
            elif kind == "event":
                conn.execute(
                    "INSERT INTO events (session_id, ts, kind, data) VALUES (?, ?, ?, ?)", (self.session_id, *values)
                )
            elif kind == "stats":
                conn.execute(
                    "UPDATE sessions SET stats = ?, stats_at = ? WHERE id = ?", (values[0], values[1], self.session_id)
                )
            elif kind == "end":
                conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (values[0], self.session_id))
            elif kind == "prune":
                conn.commit()
                self.pruned = prune(conn, values[0], now=self.clock())
                if self.pruned:
                    log.info("session store: removed %d sessions older than %g days", self.pruned, values[0])
        except sqlite3.Error as exc:
            self.error = f"session store write failed: {exc}"
            log.error(self.error)

    def _prune_old_rows(self, conn: sqlite3.Connection) -> None:
        """Once an hour (of the session's clock): a session that runs longer than the retention sheds its oldest
        rows, so the store stays within `retention_days` however long the service runs."""
        now = self.clock()
        if self.retention_days <= 0 or now - self._pruned_rows_at < ROW_PRUNE_INTERVAL_S:
            return
        self._pruned_rows_at = now
        try:
            removed = prune_rows(conn, self.session_id, now - self.retention_days * DAY_S)
        except sqlite3.Error as exc:
            self.error = f"session store pruning failed: {exc}"
            log.error(self.error)
            return
        if removed:
            log.info("session store: removed %d rows older than %g days", removed, self.retention_days)

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            conn.commit()
        except sqlite3.Error as exc:
            self.error = f"session store commit failed: {exc}"
            log.error(self.error)


# ---- reading past sessions -----------------------------------------------------------------------------------------
@dataclass
class StoredSession:
    id: str
    started_at: float
    ended_at: float | None
    host: str
    demo: bool
    info: dict[str, Any]
    stats: dict[str, Any] | None
    stats_at: float | None
    records: list[RequestRecord] = field(default_factory=list)
    model_events: list[RequestRecord] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_seen(self) -> float:
        """When the session was last known alive: its end, else its newest row (a crashed session)."""
        candidates = [self.started_at, self.ended_at or 0.0, self.stats_at or 0.0]
        candidates += [r.t_end or r.t_arrival for r in self.records[-1:]]
        candidates += [row["ts"] for row in self.telemetry[-1:]]
        return max(candidates)

    def state(self, now: float | None = None) -> str:
        """ "ended" (a clean stop), "running" (written to in the last seconds) or "crashed"."""
        return session_state(self.ended_at, self.host, self.info, self.last_seen, now)

    def session_json(self) -> dict[str, Any]:
        end = self.ended_at or self.last_seen
        return {
            "id": self.id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(end - self.started_at, 3),
            "host": self.host,
            "demo": self.demo,
            "state": self.state(),
        }


def session_state(
    ended_at: float | None, host: str, info: dict[str, Any], last_seen: float, now: float | None = None
) -> str:
    if ended_at is not None:
        return "ended"
    pid = info.get("pid")
    if isinstance(pid, int) and host == socket.gethostname():
        return "running" if _pid_alive(pid) else "crashed"
    now = time.time() if now is None else now
    return "running" if now - last_seen < LIVE_WITHIN_S else "crashed"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def open_reader(path: Path) -> sqlite3.Connection:
    if not Path(path).exists():
        raise StoreError(f"no session store at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        conn.execute("SELECT 1 FROM sessions LIMIT 1")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the session store {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    return conn


def list_sessions(path: Path, limit: int = 50) -> list[dict[str, Any]]:
    conn = open_reader(path)
    try:
        rows = [
            dict(row)
            for row in conn.execute(
                "SELECT s.id, s.started_at, s.ended_at, s.host, s.demo, s.info, s.stats_at, "
                "(SELECT COUNT(*) FROM requests r WHERE r.session_id = s.id) AS requests "
                "FROM sessions s ORDER BY s.started_at DESC LIMIT ?",
                (limit,),
            )
        ]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the session store {path}: {exc}") from None
    finally:
        conn.close()
    for row in rows:
        info = _json_or_empty(row.pop("info"))
        last_seen = max(row["started_at"], row.pop("stats_at") or 0.0)
        row["state"] = session_state(row["ended_at"], row["host"] or "", info, last_seen)
    return rows


def resolve_session_id(conn: sqlite3.Connection, wanted: str | None) -> str:
    """`None` or "latest" = the newest session; otherwise an id or a unique prefix of one."""
    if not wanted or wanted == "latest":
        row = conn.execute("SELECT id FROM sessions ORDER BY started_at DESC LIMIT 1").fetchone()
        if row is None:
            raise StoreError("the session store holds no sessions yet")
        newest: str = row[0]
        return newest
    rows = conn.execute(
        "SELECT id FROM sessions WHERE id LIKE ? ORDER BY started_at DESC LIMIT 3", (wanted.replace("%", "") + "%",)
    ).fetchall()
    exact: list[str] = [r[0] for r in rows if r[0] == wanted]
    if exact:
        return exact[0]
    if not rows:
        raise StoreError(f"no session '{wanted}' in the store (claw export --list shows them)")
    if len(rows) > 1:
        raise StoreError(
            f"'{wanted}' matches several sessions ({', '.join(r[0] for r in rows)}, ...): give more of the id"
        )
    only: str = rows[0][0]
    return only


def load_session(path: Path, session_id: str | None = None) -> StoredSession:
    conn = open_reader(path)
    try:
        sid = resolve_session_id(conn, session_id)
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone()
        records = [
            record_from_json(json.loads(r["record"]))
            for r in conn.execute("SELECT record FROM requests WHERE session_id = ? ORDER BY t_arrival", (sid,))
        ]
        telemetry = [
            dict(r)
            for r in conn.execute(
                "SELECT ts, gpu, power_w, energy_j, sm_clock_mhz, mem_clock_mhz, util_pct, temp_c, vram_used_mib "
                "FROM telemetry WHERE session_id = ? ORDER BY ts, gpu",
                (sid,),
            )
        ]
        events = [
            {"ts": r["ts"], "kind": r["kind"], "data": _json_or_empty(r["data"])}
            for r in conn.execute("SELECT ts, kind, data FROM events WHERE session_id = ? ORDER BY ts", (sid,))
        ]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read session {session_id or 'latest'}: {exc}") from None
    finally:
        conn.close()
    keys = row.keys()
    return StoredSession(
        id=row["id"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        host=row["host"] or "",
        demo=bool(row["demo"]),
        info=_json_or_empty(row["info"]),
        stats=_json_or_empty(row["stats"]) if "stats" in keys and row["stats"] else None,
        stats_at=row["stats_at"] if "stats_at" in keys else None,
        records=[r for r in records if r.is_request],
        model_events=[r for r in records if not r.is_request],
        telemetry=telemetry,
        events=events,
    )


def _json_or_empty(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def list_requests(
    path: Path, session_id: str, query: RequestQuery, older_than: RequestRecord | None
) -> list[RequestRecord]:
    """A page of a session's stored requests, newest first: those older than `older_than` (or than the record
    `query.before` names), matching the query's filters."""
    conn = open_reader(path)
    try:
        anchor: tuple[float, str] | None = None
        if older_than is not None:
            anchor = (older_than.t_arrival, older_than.id)
        elif query.before:
            row = conn.execute(
                "SELECT t_arrival, id FROM requests WHERE session_id = ? AND id = ?", (session_id, query.before)
            ).fetchone()
            if row is None:
                return []
            anchor = (row[0], row[1])
        sql = "SELECT record FROM requests WHERE session_id = ? AND (kind IS NULL OR kind = 'request')"
        args: list[object] = [session_id]
        if anchor is not None:
            sql += " AND (t_arrival < ? OR (t_arrival = ? AND id < ?))"
            args += [anchor[0], anchor[0], anchor[1]]
        for column, value in (("model", query.model), ("agent", query.agent), ("status", query.status)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if query.since is not None:
            sql += " AND t_arrival >= ?"
            args.append(query.since)
        sql += " ORDER BY t_arrival DESC, id DESC LIMIT ?"
        args.append(query.limit)
        return [record_from_json(json.loads(row[0])) for row in conn.execute(sql, args)]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the stored requests: {exc}") from None
    finally:
        conn.close()


def record_from_json(data: dict[str, Any]) -> RequestRecord:
    """A RequestRecord back from the JSON shape of `/claw/v1/requests` (and the store)."""
    times = data.get("times") or {}
    server = data.get("server") or {}
    return RequestRecord(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        endpoint=str(data.get("endpoint") or ""),
        kind=str(data.get("kind")) if data.get("kind") in MODEL_EVENT_KINDS else REQUEST,
        surface=data.get("surface") or "ollama",
        agent=data.get("agent"),
        backend=data.get("backend"),
        gpu=data.get("gpu") if isinstance(data.get("gpu"), int) else None,
        stream=bool(data.get("stream", True)),
        client=str(data.get("client") or ""),
        batch=data.get("batch"),
        status=data.get("status") or "error",
        http_status=data.get("http_status"),
        error=data.get("error"),
        downgraded_from=data.get("downgraded_from"),
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
        t_arrival=float(times.get("arrival") or 0.0),
        t_queue_exit=times.get("queue_exit"),
        t_upstream_start=times.get("upstream_start"),
        t_first_token=times.get("first_token"),
        t_end=times.get("end"),
        server_total_ms=server.get("total_ms"),
        server_load_ms=server.get("load_ms"),
        server_prompt_eval_ms=server.get("prompt_eval_ms"),
        server_eval_ms=server.get("eval_ms"),
        wake_ms=data.get("wake_ms"),
        energy_j=float(data.get("energy_j") or 0.0),
        prefill_j=float(data.get("prefill_j") or 0.0),
        decode_j=float(data.get("decode_j") or 0.0),
        load_j=float(data.get("load_j") or 0.0),
        attribution=data.get("attribution"),
        model_resident=data.get("model_resident"),
        energy_final=bool(data.get("energy_final", True)),
    )


# ---- chat conversations ----------------------------------------------------------------------------------------------
# Written rarely (once per chat turn) and read back at once, so each call opens its own connection: WAL lets it write
# beside the session's writer thread.
class ConversationNotFound(StoreError):
    """No conversation with that id."""


def _conversations(path: Path, action: Callable[[sqlite3.Connection], T]) -> T:
    try:
        conn = connect(Path(path))
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the session store {path}: {exc}") from None
    try:
        with conn:
            return action(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"the session store {path} failed: {exc}") from None
    finally:
        conn.close()


def save_conversation(path: Path, conversation: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Insert or replace a conversation (the JSON of `Conversation.to_json()`); returns it as saved."""
    saved = dict(conversation, updated_at=now if now is not None else time.time())
    row = (
        saved["id"],
        saved.get("title") or "",
        saved["model"],
        len(saved.get("turns") or []),
        saved.get("created_at") or saved["updated_at"],
        saved["updated_at"],
        saved.get("session_id"),
        json.dumps(saved, ensure_ascii=False),
    )
    _conversations(
        path,
        lambda conn: conn.execute(
            "INSERT OR REPLACE INTO conversations (id, title, model, turns, created_at, updated_at, session_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        ),
    )
    return saved


def list_conversations(path: Path, limit: int = 200) -> list[dict[str, Any]]:
    """The newest conversations first, without their turns (`turns` is how many)."""
    keys = ("id", "title", "model", "turns", "created_at", "updated_at", "session_id")
    rows = _conversations(
        path,
        lambda conn: conn.execute(
            f"SELECT {', '.join(keys)} FROM conversations ORDER BY updated_at DESC LIMIT ?", (limit,)
        ).fetchall(),
    )
    return [dict(zip(keys, row)) for row in rows]


def load_conversation(path: Path, conversation_id: str) -> dict[str, Any]:
    row = _conversations(
        path, lambda conn: conn.execute("SELECT data FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    )
    if row is None:
        raise ConversationNotFound(f"no conversation '{conversation_id}' in the session store")
    data = _json_or_empty(row[0])
    if not data:
        raise StoreError(f"conversation '{conversation_id}' in the session store cannot be read")
    return data


def delete_conversation(path: Path, conversation_id: str) -> None:
    deleted = _conversations(
        path, lambda conn: conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount
    )
    if deleted == 0:
        raise ConversationNotFound(f"no conversation '{conversation_id}' in the session store")
