"""Batch files, jobs and each request's state and result, in tables of the session store's SQLite file.

These tables outlive sessions (a job accepted by one run of `claw serve` is finished by the next). Every write
commits before it returns, on one connection guarded by a lock: callers run it off the event loop
(`asyncio.to_thread`). A `kill -9` therefore loses nothing that was acknowledged: a job exists once `POST
/v1/batches` answered, and a line's result once it was written. Execution is at least once: a line that was running
when the process died runs again after a restart. Result writing is idempotent, keyed by (batch, custom_id): the
first result written for a line stays, so no line is ever completed twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from claw_tui.batch.lines import BatchLine

T = TypeVar("T")

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS batch_files (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    lines INTEGER,
    batch_id TEXT,
    content BLOB
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    input_file_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    window_s REAL NOT NULL,
    metadata TEXT,
    status TEXT NOT NULL,
    model TEXT,
    total INTEGER NOT NULL,
    errors TEXT,
    output_file_id TEXT,
    error_file_id TEXT,
    in_progress_at REAL,
    finalizing_at REAL,
    completed_at REAL,
    failed_at REAL,
    expired_at REAL,
    cancelling_at REAL,
    cancelled_at REAL,
    webhook TEXT
);
CREATE INDEX IF NOT EXISTS batch_jobs_by_created ON batch_jobs(created_at, id);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    status_code INTEGER,
    response TEXT,
    error TEXT,
    request_id TEXT,
    energy_j REAL NOT NULL DEFAULT 0,
    load_j REAL NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (batch_id, custom_id)
);
CREATE INDEX IF NOT EXISTS batch_lines_by_state ON batch_lines(batch_id, state, idx);
"""

LINE_STATES = ("queued", "running", "done", "failed", "expired")
FINISHED_LINE_STATES = ("done", "failed", "expired")
ACTIVE_JOB_STATES = ("validating", "in_progress", "finalizing", "cancelling")
TIME_COLUMNS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
DAY_S = 86400.0


class BatchStoreError(Exception):
    """The batch tables cannot be read or written."""


class BatchStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def open(self) -> int:
        """Open (creating the tables); lines left running by a process that died go back to the queue. Returns
        how many did."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA_SQL)
        with conn:
            recovered = conn.execute("UPDATE batch_lines SET state = 'queued' WHERE state = 'running'").rowcount
        self._conn = conn
        return recovered

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._conn is None:
                raise BatchStoreError("the batch store is closed")
            try:
                with self._conn:
                    return work(self._conn)
            except sqlite3.Error as exc:
                raise BatchStoreError(f"batch store: {exc}") from exc

    # ---- files -------------------------------------------------------------------------------------------------
    def add_file(self, file: dict[str, Any], content: bytes) -> None:
        self._run(
            lambda c: c.execute(
                "INSERT INTO batch_files (id, created_at, filename, purpose, bytes, lines, batch_id, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    file["id"],
                    file["created_at"],
                    file["filename"],
                    file["purpose"],
                    len(content),
                    file.get("lines"),
                    file.get("batch_id"),
                    content,
                ),
            )
        )

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        row = self._run(
            lambda c: c.execute(
                "SELECT id, created_at, filename, purpose, bytes, lines, batch_id FROM batch_files WHERE id = ?",
                (file_id,),
            ).fetchone()
        )
        return dict(row) if row is not None else None

    def file_content(self, file_id: str) -> bytes | None:
        row = self._run(lambda c: c.execute("SELECT content FROM batch_files WHERE id = ?", (file_id,)).fetchone())
        return None if row is None else bytes(row[0] or b"")

    def list_files(self, purpose: str | None, after: str | None, limit: int) -> list[dict[str, Any]]:
        def work(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT id, created_at, filename, purpose, bytes, lines, batch_id FROM batch_files WHERE 1 = 1"
            args: list[object] = []
            if purpose:
                sql += " AND purpose = ?"
                args.append(purpose)
            if after:
                anchor = c.execute("SELECT created_at FROM batch_files WHERE id = ?", (after,)).fetchone()
                if anchor is None:
                    return []
                sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
                args += [anchor[0], anchor[0], after]
            sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
            args.append(limit)
            return [dict(r) for r in c.execute(sql, args)]

        return self._run(work)

    # ---- jobs --------------------------------------------------------------------------------------------------
    def create_job(self, job: dict[str, Any], lines: Iterable[BatchLine]) -> None:
        """The job and all its lines, in one transaction: a job exists whole or not at all."""

        def work(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO batch_jobs (id, created_at, input_file_id, endpoint, completion_window, window_s, "
                "metadata, status, model, total, errors, webhook) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job["id"],
                    job["created_at"],
                    job["input_file_id"],
                    job["endpoint"],
                    job["completion_window"],
                    job["window_s"],
                    json.dumps(job.get("metadata")),
                    job["status"],
                    job.get("model"),
                    job["total"],
                    json.dumps(job.get("errors")) if job.get("errors") else None,
                    json.dumps(job.get("webhook")) if job.get("webhook") else None,
                ),
            )
            c.executemany(
                "INSERT INTO batch_lines (batch_id, idx, custom_id, url, body) VALUES (?, ?, ?, ?, ?)",
                ((job["id"], ln.index, ln.custom_id, ln.url, json.dumps(ln.body)) for ln in lines),
            )

        self._run(work)

    def get_job(self, batch_id: str) -> dict[str, Any] | None:
        def work(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = c.execute("SELECT * FROM batch_jobs WHERE id = ?", (batch_id,)).fetchone()
            return None if row is None else self._job_with_counts(c, row)

        return self._run(work)

    def list_jobs(self, after: str | None, limit: int, active_only: bool = False) -> list[dict[str, Any]]:
        def work(c: sqlite3.Connection) -> list[dict[str, Any]]:
            sql = "SELECT * FROM batch_jobs WHERE 1 = 1"
            args: list[object] = []
            if active_only:
                sql += f" AND status IN ({', '.join('?' * len(ACTIVE_JOB_STATES))})"
                args += list(ACTIVE_JOB_STATES)
            if after:
                anchor = c.execute("SELECT created_at FROM batch_jobs WHERE id = ?", (after,)).fetchone()
                if anchor is None:
                    return []
                sql += " AND (created_at < ? OR (created_at = ? AND id < ?))"
                args += [anchor[0], anchor[0], after]
            sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
            args.append(limit)
            return [self._job_with_counts(c, row) for row in c.execute(sql, args).fetchall()]

        return self._run(work)

    @staticmethod
    def _job_with_counts(c: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        job["metadata"] = json.loads(job["metadata"]) if job["metadata"] else None
        job["errors"] = json.loads(job["errors"]) if job["errors"] else None
        job["webhook"] = json.loads(job["webhook"]) if job["webhook"] else None
        counts = dict.fromkeys(LINE_STATES, 0)
        for state, count in c.execute(
            "SELECT state, COUNT(*) FROM batch_lines WHERE batch_id = ? GROUP BY state", (job["id"],)
        ):
            counts[state] = count
        job["line_states"] = counts
        sums = c.execute(
            "SELECT COALESCE(SUM(energy_j), 0), COALESCE(SUM(load_j), 0), COALESCE(SUM(prompt_tokens), 0), "
            "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(attempts), 0), "
            "SUM(CASE WHEN state = 'done' THEN finished_at - started_at END), "
            "SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) FROM batch_lines WHERE batch_id = ?",
            (job["id"],),
        ).fetchone()
        job["energy_j"], job["load_j"], job["prompt_tokens"], job["completion_tokens"], job["attempts"] = sums[:5]
        job["mean_line_s"] = (sums[5] / sums[6]) if sums[6] and sums[5] is not None else None
        return job

    def set_status(self, batch_id: str, status: str, at: float, **fields: Any) -> None:
        """Change a job's status and stamp its `<status>_at` time (unless already stamped)."""
        column = f"{status}_at"
        sets = ["status = ?"]
        args: list[object] = [status]
        if column in TIME_COLUMNS:
            sets.append(f"{column} = COALESCE({column}, ?)")
            args.append(at)
        for key, value in fields.items():
            if key not in ("output_file_id", "error_file_id", "errors", "webhook"):
                raise ValueError(f"not a job field: {key}")
            sets.append(f"{key} = ?")
            args.append(json.dumps(value) if key in ("errors", "webhook") else value)
        args.append(batch_id)
        self._run(lambda c: c.execute(f"UPDATE batch_jobs SET {', '.join(sets)} WHERE id = ?", args))

    def set_webhook(self, batch_id: str, state: dict[str, Any]) -> None:
        self._run(lambda c: c.execute("UPDATE batch_jobs SET webhook = ? WHERE id = ?", (json.dumps(state), batch_id)))

    def queued_lines(self) -> int:
        """Lines waiting or running over every job that may still run them."""
        count: int = self._run(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM batch_lines l JOIN batch_jobs j ON j.id = l.batch_id "
                "WHERE l.state IN ('queued', 'running') AND j.status IN ('validating', 'in_progress')"
            ).fetchone()[0]
        )
        return count

    # ---- lines -------------------------------------------------------------------------------------------------
    def claim_lines(self, batch_id: str, limit: int, at: float) -> list[tuple[BatchLine, int]]:
        """The next queued lines of a job, marked running, each with its attempt number (this one counted)."""

        def work(c: sqlite3.Connection) -> list[tuple[BatchLine, int]]:
            rows = c.execute(
                "SELECT idx, custom_id, url, body, attempts FROM batch_lines WHERE batch_id = ? AND state = 'queued' "
                "ORDER BY idx LIMIT ?",
                (batch_id, limit),
            ).fetchall()
            c.executemany(
                "UPDATE batch_lines SET state = 'running', attempts = attempts + 1, started_at = ? "
                "WHERE batch_id = ? AND custom_id = ?",
                [(at, batch_id, r["custom_id"]) for r in rows],
            )
            return [
                (BatchLine(r["idx"], r["custom_id"], r["url"], json.loads(r["body"])), r["attempts"] + 1) for r in rows
            ]

        return self._run(work)

    def finish_line(
        self,
        batch_id: str,
        custom_id: str,
        *,
        state: str,
        status_code: int | None,
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
        request_id: str | None,
        at: float,
    ) -> bool:
        """Write a line's result, once: False when the line already had one (that result stays)."""
        written: bool = self._run(
            lambda c: (
                c.execute(
                    "UPDATE batch_lines SET state = ?, status_code = ?, response = ?, error = ?, request_id = ?, "
                    "finished_at = ? WHERE batch_id = ? AND custom_id = ? "
                    "AND state NOT IN ('done', 'failed', 'expired')",
                    (
                        state,
                        status_code,
                        json.dumps(response) if response is not None else None,
                        json.dumps(error) if error is not None else None,
                        request_id,
                        at,
                        batch_id,
                        custom_id,
                    ),
                ).rowcount
                == 1
            )
        )
        return written

    def requeue_line(self, batch_id: str, custom_id: str, sent: bool = True) -> None:
        """A line stopped before its end (interactive work came first): it runs again. One given back before it was
        sent gives its attempt back too."""
        self._run(
            lambda c: c.execute(
                "UPDATE batch_lines SET state = 'queued', attempts = attempts - ? "
                "WHERE batch_id = ? AND custom_id = ? AND state = 'running'",
                (0 if sent else 1, batch_id, custom_id),
            )
        )

    def expire_lines(self, batch_id: str, at: float) -> int:
        return self._run(
            lambda c: (
                c.execute(
                    "UPDATE batch_lines SET state = 'expired', finished_at = ? "
                    "WHERE batch_id = ? AND state IN ('queued', 'running')",
                    (at, batch_id),
                ).rowcount
            )
        )

    def add_energy(self, updates: list[tuple[str, str, float, float, int, int, bool]]) -> None:
        """(batch_id, custom_id, energy_j, load_j, prompt_tokens, completion_tokens, answered) per finished attempt:
        energy adds up over attempts; the tokens are those of the attempt that answered."""

        def work(c: sqlite3.Connection) -> None:
            for batch_id, custom_id, energy, load, prompt, completion, answered in updates:
                c.execute(
                    "UPDATE batch_lines SET energy_j = energy_j + ?, load_j = load_j + ? "
                    "WHERE batch_id = ? AND custom_id = ?",
                    (energy, load, batch_id, custom_id),
                )
                if answered:
                    c.execute(
                        "UPDATE batch_lines SET prompt_tokens = ?, completion_tokens = ? "
                        "WHERE batch_id = ? AND custom_id = ?",
                        (prompt, completion, batch_id, custom_id),
                    )

        self._run(work)

    def finished_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """Every line with a result (or expired), in input order: the output and error files are made from them."""
        return self._run(
            lambda c: [
                dict(r)
                for r in c.execute(
                    "SELECT idx, custom_id, state, status_code, response, error, request_id FROM batch_lines "
                    "WHERE batch_id = ? AND state IN ('done', 'failed', 'expired') ORDER BY idx",
                    (batch_id,),
                )
            ]
        )

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete ended jobs (with their lines and files) created more than `retention_days` ago."""
        if retention_days <= 0:
            return 0
        cutoff = (now if now is not None else time.time()) - retention_days * DAY_S

        def work(c: sqlite3.Connection) -> int:
            old = [
                r[0]
                for r in c.execute(
                    f"SELECT id FROM batch_jobs WHERE created_at < ? AND status NOT IN "
                    f"({', '.join('?' * len(ACTIVE_JOB_STATES))})",
                    (cutoff, *ACTIVE_JOB_STATES),
                )
            ]
            for batch_id in old:
                c.execute("DELETE FROM batch_lines WHERE batch_id = ?", (batch_id,))
                c.execute("DELETE FROM batch_files WHERE batch_id = ?", (batch_id,))
                c.execute("DELETE FROM batch_jobs WHERE id = ?", (batch_id,))
            c.execute(
                "DELETE FROM batch_files WHERE batch_id IS NULL AND created_at < ? "
                "AND id NOT IN (SELECT input_file_id FROM batch_jobs)",
                (cutoff,),
            )
            return len(old)

        return self._run(work)
