"""The batch service of a Session: files and jobs (kept in the store), the drain that runs them, their energy (from
the ledger's records of every attempt), events on the session's bus, and the webhook at the end."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import unquote, urlsplit

from claw_tui.batch import objects
from claw_tui.batch.drain import Drain, JobState, LineOutcome
from claw_tui.batch.lines import ENDPOINTS, BatchLine, InputError, parse_input
from claw_tui.batch.store import ACTIVE_JOB_STATES, BatchStore
from claw_tui.batch.webhook import deliver
from claw_tui.config import BatchConfig
from claw_tui.ledger import LedgerEvent
from claw_tui.records import RequestRecord

log = logging.getLogger(__name__)

WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
WINDOW_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_WINDOW_S = 30 * 86400.0
MAX_METADATA_KEYS = 16
PROGRESS_EVERY_S = 0.5
ENERGY_SETTLE_S = 15.0
ENERGY_FLUSH_S = 0.25
END_STATES = ("completed", "failed", "expired", "cancelled")


class BatchError(Exception):
    """A request the Batch API refuses: `status` is the HTTP status, `param` the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def parse_window(text: object) -> float:
    """ "24h", "90m", "2d", "30s" → seconds."""
    match = WINDOW.match(text) if isinstance(text, str) else None
    if match is None:
        raise BatchError(400, 'completion_window must be a duration such as "24h" (s, m, h or d)', "completion_window")
    seconds = float(match.group(1)) * WINDOW_UNITS[match.group(2)]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise BatchError(400, "completion_window must be more than 0 and at most 30d", "completion_window")
    return seconds


def check_metadata(metadata: object) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise BatchError(400, "metadata must be an object of strings", "metadata")
    if len(metadata) > MAX_METADATA_KEYS:
        raise BatchError(400, f"metadata holds at most {MAX_METADATA_KEYS} keys", "metadata")
    if any(len(k) > 64 or len(v) > 512 for k, v in metadata.items()):
        raise BatchError(400, "metadata keys are at most 64 characters, values at most 512", "metadata")
    url = metadata.get("webhook_url")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BatchError(400, "metadata.webhook_url must be an http(s) URL", "metadata")
    return metadata


class BatchService:
    def __init__(
        self,
        config: BatchConfig,
        store: BatchStore,
        *,
        interactive: Callable[[], int],
        resident: Callable[[str], bool],
        publish: Callable[[str, dict[str, Any]], object] = lambda kind, data: None,
        clock: Callable[[], float] = time.time,
        retention_days: float = 0.0,
        webhook_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.publish = publish
        self.retention_days = retention_days
        self.recovered_lines = 0
        self.drain = Drain(
            self,
            slots=config.slots,
            preempt=config.preempt,
            quiet_s=config.quiet_s,
            max_attempts=config.max_attempts,
            interactive=interactive,
            resident=resident,
            clock=clock,
        )
        self._webhook_sleep = webhook_sleep
        self._energy_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer of energy at a time
        self._pending_records: collections.Counter[str] = collections.Counter()  # batch id -> records not final
        self._energy_updates: list[tuple[str, str, float, float, int, int, bool]] = []
        self._progress_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self, gateway_url: str, headers: dict[str, str]) -> None:
        self._loop = asyncio.get_running_loop()
        self.recovered_lines = await asyncio.to_thread(self.store.open)
        if self.recovered_lines:
            log.info("batch: %d lines interrupted by the last stop run again", self.recovered_lines)
        if self.retention_days > 0:
            await asyncio.to_thread(self.store.prune, self.retention_days, self.clock())
        for job in await asyncio.to_thread(self.store.list_jobs, None, 100_000, True):
            self.drain.jobs[job["id"]] = self._job_state(job)
        for job in await asyncio.to_thread(self.store.list_jobs, None, 200):
            if job["status"] in END_STATES and (job.get("webhook") or {}).get("state") == "pending":
                self._spawn(self._tell_end(job["id"], job["status"], settle=False))
        self._flusher = self._loop.create_task(self._flush_energy_loop(), name="claw-batch-energy")
        self.drain.start(gateway_url, headers)

    async def stop(self) -> None:
        await self.drain.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await asyncio.to_thread(self._flush_energy)
        await asyncio.to_thread(self.store.close)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _job_state(job: dict[str, Any]) -> JobState:
        states = job["line_states"]
        return JobState(
            id=job["id"],
            created_at=job["created_at"],
            deadline=job["created_at"] + job["window_s"],
            model=job.get("model") or "",
            status=job["status"],
            queued=states["queued"] + states["running"],
            done=states["done"] + states["failed"],
            mean_line_s=job.get("mean_line_s"),
        )

    # ---- files -------------------------------------------------------------------------------------------------
    async def create_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        if purpose != "batch":
            raise BatchError(400, f"purpose must be 'batch' (claw keeps batch input files only; got '{purpose}')")
        if len(content) > self.config.max_file_bytes:
            raise BatchError(
                413, f"the file is {len(content):,} bytes; the limit is {self.config.max_file_bytes:,} ([batch])"
            )
        try:
            lines = await asyncio.to_thread(parse_input, content, self.config.max_lines)
        except InputError as exc:
            raise BatchError(400, f"{filename or 'the file'}: {exc}", "file") from None
        row = {
            "id": "file-" + secrets.token_hex(12),
            "created_at": self.clock(),
            "filename": filename or "batch.jsonl",
            "purpose": purpose,
            "lines": len(lines),
        }
        await asyncio.to_thread(self.store.add_file, row, content)
        row["bytes"] = len(content)
        return objects.file_object(row)

    async def get_file(self, file_id: str) -> dict[str, Any]:
        row = await asyncio.to_thread(self.store.get_file, file_id)
        if row is None:
            raise BatchError(404, f"No such File object: {file_id}", "file_id")
        return objects.file_object(row)

    async def file_content(self, file_id: str) -> bytes:
        content = await asyncio.to_thread(self.store.file_content, file_id)
        if content is None:
            raise BatchError(404, f"No such File object: {file_id}", "file_id")
        return content

    async def list_files(self, purpose: str | None, after: str | None, limit: int) -> dict[str, Any]:
        rows = await asyncio.to_thread(self.store.list_files, purpose, after, limit + 1)
        return objects.page([objects.file_object(r) for r in rows[:limit]], len(rows) > limit)

    # ---- jobs --------------------------------------------------------------------------------------------------
    async def create_batch(
        self, input_file_id: object, endpoint: object, completion_window: object, metadata: object
    ) -> dict[str, Any]:
        if endpoint not in ENDPOINTS:
            raise BatchError(400, f"endpoint must be one of {', '.join(ENDPOINTS)}", "endpoint")
        window_s = parse_window(completion_window)
        metadata = check_metadata(metadata)
        if not isinstance(input_file_id, str) or not input_file_id:
            raise BatchError(400, "input_file_id must name an uploaded file", "input_file_id")
        file = await asyncio.to_thread(self.store.get_file, input_file_id)
        if file is None:
            raise BatchError(404, f"No such File object: {input_file_id}", "input_file_id")
        if file["purpose"] != "batch":
            raise BatchError(400, f"{input_file_id} is not a batch input file (purpose '{file['purpose']}')")
        content = await asyncio.to_thread(self.store.file_content, input_file_id)
        if content is None:  # deleted (pruned) since it was looked up
            raise BatchError(404, f"No such File object: {input_file_id}", "input_file_id")
        lines = await asyncio.to_thread(parse_input, content, self.config.max_lines)
        queued = await asyncio.to_thread(self.store.queued_lines)
        if queued + len(lines) > self.config.max_queued_lines:
            raise BatchError(
                429,
                f"{queued:,} batch requests are already queued; this job's {len(lines):,} would pass the limit of "
                f"{self.config.max_queued_lines:,} ([batch] max_queued_lines): wait for jobs to finish",
                code="queue_full",
            )
        now = self.clock()
        errors = [
            {
                "code": "invalid_url",
                "message": f"the line's url {ln.url} is not the batch's endpoint {endpoint}",
                "param": "url",
                "line": ln.index + 1,
            }
            for ln in lines
            if ln.url != endpoint
        ][:100]
        models = collections.Counter(ln.model for ln in lines)
        job: dict[str, Any] = {
            "id": "batch_" + secrets.token_hex(12),
            "created_at": now,
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": str(completion_window).strip(),
            "window_s": window_s,
            "metadata": metadata,
            "status": "failed" if errors else "validating",
            "model": models.most_common(1)[0][0],
            "total": 0 if errors else len(lines),
            "errors": errors or None,
            "webhook": self._webhook_state(metadata),
        }
        await asyncio.to_thread(self.store.create_job, job, [] if errors else lines)
        if errors:
            await asyncio.to_thread(self.store.set_status, job["id"], "failed", now)
            self._spawn(self._tell_end(job["id"], "failed", settle=False))
        else:
            self.drain.jobs[job["id"]] = JobState(
                id=job["id"],
                created_at=now,
                deadline=now + window_s,
                model=job["model"],
                status="validating",
                queued=len(lines),
            )
            self.drain.wake()
        batch = await self.get_batch(job["id"])
        self.publish("batch.created", batch)
        return batch

    @staticmethod
    def _webhook_state(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        url = (metadata or {}).get("webhook_url")
        if not url:
            return None
        return {"url": url, "state": "pending", "tries": 0}

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        [(job, final)] = await asyncio.to_thread(self._jobs_as_written, lambda: [self.store.get_job(batch_id)])
        if job is None:
            raise BatchError(404, f"No such Batch object: {batch_id}", "batch_id")
        return objects.batch_object(job, self._live(batch_id, final))

    def _jobs_as_written(
        self, read: Callable[[], list[dict[str, Any] | None]]
    ) -> list[tuple[dict[str, Any] | None, bool]]:
        """Jobs read from the store, each with whether its energy is final: no energy is written in between, so a
        job said final carries all of its energy (blocking: call it off the event loop)."""
        with self._flush_lock:
            jobs = read()
            return [(job, job is not None and self._energy_final(job["id"])) for job in jobs]

    def _energy_final(self, batch_id: str) -> bool:
        with self._energy_lock:
            return not (self._pending_records[batch_id] > 0 or any(u[0] == batch_id for u in self._energy_updates))

    def _live(self, batch_id: str, energy_final: bool) -> dict[str, Any]:
        live = self.drain.live(batch_id) or {}
        live["energy_final"] = energy_final
        return live

    async def list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        rows = await asyncio.to_thread(self._jobs_as_written, lambda: list(self.store.list_jobs(after, limit + 1)))
        items = [objects.batch_object(job, self._live(job["id"], final)) for job, final in rows[:limit] if job]
        return objects.page(items, len(rows) > limit)

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        job = await asyncio.to_thread(self.store.get_job, batch_id)
        if job is None:
            raise BatchError(404, f"No such Batch object: {batch_id}", "batch_id")
        if job["status"] in ("validating", "in_progress"):
            await asyncio.to_thread(self.store.set_status, batch_id, "cancelling", self.clock())
            state = self.drain.jobs.get(batch_id)
            if state is not None:
                state.status = "cancelling"
            self.drain.wake()
        elif job["status"] not in ("cancelling", "cancelled"):
            raise BatchError(
                409, f"batch {batch_id} is {job['status']}: only a job validating or in progress can be cancelled"
            )
        batch = await self.get_batch(batch_id)
        self.publish("batch.status", batch)
        return batch

    # ---- the drain's calls ---------------------------------------------------------------------------------------
    async def claim(self, job: JobState, count: int) -> list[tuple[BatchLine, int]]:
        return await asyncio.to_thread(self.store.claim_lines, job.id, count, self.clock())

    async def line_finished(self, job: JobState, line: BatchLine, outcome: LineOutcome) -> None:
        now = self.clock()
        if outcome.state in ("done", "failed"):
            await asyncio.to_thread(
                self.store.finish_line,
                job.id,
                line.custom_id,
                state=outcome.state,
                status_code=outcome.status_code,
                response=outcome.response,
                error=outcome.error,
                request_id=outcome.request_id,
                at=now,
            )
            job.done += 1
        else:
            await asyncio.to_thread(self.store.requeue_line, job.id, line.custom_id, outcome.sent)
            job.queued += 1
        if now - self._progress_at.get(job.id, 0.0) >= PROGRESS_EVERY_S:
            self._progress_at[job.id] = now
            self.publish("batch.progress", await self.get_batch(job.id))

    async def advance(self, job: JobState, now: float) -> None:
        """Move a job along its states: validating → in_progress → finalizing → completed, or to expired and
        cancelled; the drain calls it on every step."""
        if job.status == "validating":
            job.status = "in_progress"
            await asyncio.to_thread(self.store.set_status, job.id, "in_progress", now)
            self.publish("batch.status", await self.get_batch(job.id))
        elif job.status == "in_progress" and now >= job.deadline and (job.queued or job.in_flight):
            await self._stop_lines(job)
            await asyncio.to_thread(self.store.expire_lines, job.id, now)
            await self._finalize(job, "expired")
        elif job.status == "in_progress" and not job.queued and not job.in_flight:
            await self._finalize(job, "completed")
        elif job.status == "cancelling":
            await self._stop_lines(job)
            await self._finalize(job, "cancelled")
        elif job.status == "finalizing":
            await self._finalize(job, "completed")

    async def _stop_lines(self, job: JobState) -> None:
        tasks = list(job.in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _finalize(self, job: JobState, status: str) -> None:
        now = self.clock()
        if status == "completed":
            job.status = "finalizing"
            await asyncio.to_thread(self.store.set_status, job.id, "finalizing", now)
        rows = await asyncio.to_thread(self.store.finished_lines, job.id)
        output, errors = objects.result_files(job.id, rows)
        files = {}
        for kind, content in (("output", output), ("error", errors)):
            if not content:
                continue
            file_id = "file-" + secrets.token_hex(12)
            row = {
                "id": file_id,
                "created_at": now,
                "filename": f"{job.id}_{kind}.jsonl",
                "purpose": "batch_output",
                "batch_id": job.id,
                "lines": content.count(b"\n"),
            }
            await asyncio.to_thread(self.store.add_file, row, content)
            files[f"{kind}_file_id"] = file_id
        await asyncio.to_thread(self.store.set_status, job.id, status, self.clock(), **files)
        job.status = status
        self.drain.jobs.pop(job.id, None)
        self.publish("batch.status", await self.get_batch(job.id))
        self._spawn(self._tell_end(job.id, status, settle=True))

    async def _tell_end(self, batch_id: str, status: str, *, settle: bool) -> None:
        """Once the job's energy is final (or after ENERGY_SETTLE_S): the end event, then the webhook."""
        deadline = time.monotonic() + (ENERGY_SETTLE_S if settle else 0.0)
        # Energy becomes final on the sampler's thread, a few power samples after a line's end: a short poll.
        while time.monotonic() < deadline and not self._energy_final(batch_id):  # noqa: ASYNC110
            await asyncio.sleep(ENERGY_FLUSH_S)
        await asyncio.to_thread(self._flush_energy)
        batch = await self.get_batch(batch_id)
        self.publish(f"batch.{status}", batch)
        job = await asyncio.to_thread(self.store.get_job, batch_id)
        hook = (job or {}).get("webhook")
        if not hook or hook.get("state") != "pending":
            return
        loop = asyncio.get_running_loop()

        def keep(state: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self._spawn, asyncio.to_thread(self.store.set_webhook, batch_id, state))

        final = await deliver(
            hook["url"],
            f"batch.{status}",
            batch,
            secret=self.config.webhook_secret,
            tries=self.config.webhook_tries,
            backoff_s=self.config.webhook_backoff_s,
            on_try=keep,
            sleep=self._webhook_sleep,
            clock=self.clock,
        )
        await asyncio.to_thread(self.store.set_webhook, batch_id, final)
        self.publish("batch.webhook", {"id": batch_id, "webhook": objects.webhook_status(final)})

    # ---- energy, from the ledger ---------------------------------------------------------------------------------
    def record_opened(self, event: LedgerEvent) -> None:
        """The ledger's event listener: a batch line's request opened (its energy is pending until final)."""
        if event.kind != "request.opened":
            return
        batch = event.data.get("batch")
        if batch:
            with self._energy_lock:
                self._pending_records[batch.partition("/")[0]] += 1

    def record_final(self, record: RequestRecord) -> None:
        """The ledger's finalized listener (any thread): a batch line's attempt has its final energy."""
        if not record.batch:
            return
        batch_id, _, custom = record.batch.partition("/")
        with self._energy_lock:
            if self._pending_records[batch_id] > 0:
                self._pending_records[batch_id] -= 1
            self._energy_updates.append(
                (
                    batch_id,
                    unquote(custom),
                    record.energy_j,
                    record.load_j,
                    record.prompt_tokens,
                    record.completion_tokens,
                    record.status == "ok",
                )
            )

    async def _flush_energy_loop(self) -> None:
        while True:
            await asyncio.sleep(ENERGY_FLUSH_S)
            try:
                await asyncio.to_thread(self._flush_energy)
            except Exception:
                log.exception("writing batch energy failed")

    def _flush_energy(self) -> None:
        """Write the energy of finished attempts; they stay listed (a job's energy is not final) until written."""
        with self._flush_lock:
            with self._energy_lock:
                updates = list(self._energy_updates)
            if updates:
                self.store.add_energy(updates)
                with self._energy_lock:
                    del self._energy_updates[: len(updates)]

    # ---- for the console -------------------------------------------------------------------------------------------
    def jobs_now(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest jobs as batch objects (blocking: call it off the event loop)."""
        rows = self._jobs_as_written(lambda: list(self.store.list_jobs(None, limit)))
        return [objects.batch_object(job, self._live(job["id"], final)) for job, final in rows if job]

    def active_count(self) -> int:
        return sum(1 for job in self.drain.jobs.values() if job.status in ACTIVE_JOB_STATES)
