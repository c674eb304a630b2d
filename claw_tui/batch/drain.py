"""The batch drain: runs batch lines through claw's own gateway in the gaps interactive traffic leaves.

Rules, looked at whenever something changes (a job arrives, a line ends, a request is forwarded to a backend) and at
least every `IDLE_TICK_S` (every `BUSY_TICK_S` while queued lines wait):
- Interactive traffic first. A batch line starts only while the gateway holds no interactive request (waiting or
  in flight) and none has ended within the last `quiet_s`; then lines start in a group that fills the backend's
  `slots` (it decodes them together, and spends fewer joules per token at full slots).
- With `preempt` on, the gateway tells the drain just before it forwards an interactive request to a backend (its
  `before_forward` hook): every batch line in flight there (or still on its way to a backend) is cancelled at once,
  so the interactive request finds the backend as if the batch were not there. A cancelled line goes back to the
  queue and runs again later (its energy still counts in the job). With `preempt` off, the lines in flight finish
  (they yield at the request boundary) and no new one starts.
- Among jobs with work, those whose model is resident on a backend come first (no load to pay for), then the oldest.
- A job that would miss its completion window at the rate its lines run is urgent: its lines start whatever the
  interactive traffic (within the slots) and are never cancelled for it; past its window its remaining lines expire.

Lines go to the gateway over HTTP with `X-Claw-Client: batch` and `X-Claw-Batch: <job>/<line>`, so they are metered
like any request and the ledger's records say which line they served.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import aiohttp

if TYPE_CHECKING:
    from claw_tui.batch.service import BatchService
    from claw_tui.records import RequestRecord

from claw_tui.batch.lines import BatchLine

log = logging.getLogger(__name__)

IDLE_TICK_S = 1.0
BUSY_TICK_S = 0.02
DEFAULT_LINE_S = 2.0  # a guess of a line's duration until some have run
URGENCY_MARGIN = 1.5
URGENCY_SLACK_S = 2.0
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_PAUSE_S = 30.0


@dataclass(eq=False)
class JobState:
    """What the drain keeps of a job it may run lines of (the store has the rest)."""

    id: str
    created_at: float
    deadline: float
    model: str
    status: str
    queued: int
    in_flight: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # until its result is written
    running: dict[str, float] = field(default_factory=dict)  # line -> start, while it holds a slot (no answer yet)
    sending: set[str] = field(default_factory=set)  # lines whose request is sent to the gateway
    backends: dict[str, str | None] = field(default_factory=dict)  # line in flight -> the backend it was sent to
    preempted: collections.Counter[str] = field(default_factory=collections.Counter)  # not tries that failed
    done: int = 0
    not_before: float = 0.0  # after a backend failure: wait before trying again
    mean_line_s: float | None = None

    def runnable(self, now: float) -> bool:
        return self.status == "in_progress" and self.queued > 0 and now >= self.not_before

    def note_duration(self, seconds: float) -> None:
        self.mean_line_s = seconds if self.mean_line_s is None else 0.8 * self.mean_line_s + 0.2 * seconds

    def remaining_s(self, slots: int) -> float:
        per_line = self.mean_line_s or DEFAULT_LINE_S
        return (self.queued + len(self.in_flight)) * per_line / max(1, slots)

    def urgent(self, now: float, slots: int) -> bool:
        return now + URGENCY_MARGIN * self.remaining_s(slots) + URGENCY_SLACK_S >= self.deadline

    def eta_s(self, slots: int) -> float | None:
        if self.status != "in_progress" or self.mean_line_s is None:
            return None
        return round(self.remaining_s(slots), 1)


@dataclass(frozen=True)
class LineOutcome:
    state: str  # "done" | "failed" | "retry" | "requeue"
    status_code: int | None = None
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    request_id: str | None = None
    sent: bool = True  # False: a line given back before it was sent (no attempt)


class Drain:
    """The scheduler. `interactive()` says how many requests the gateway holds now (batch lines included);
    `resident(model)` whether a backend has the model loaded. The gateway calls `before_forward(record)` for every
    request it is about to send to a backend."""

    def __init__(
        self,
        service: BatchService,
        *,
        slots: int,
        preempt: bool,
        quiet_s: float,
        max_attempts: int,
        interactive: Callable[[], int],
        resident: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.slots = slots
        self.preempt = preempt
        self.quiet_s = quiet_s
        self.max_attempts = max_attempts
        self._interactive = interactive
        self._resident = resident
        self.clock = clock
        self.jobs: dict[str, JobState] = {}
        self.preempted = 0
        self._at_gateway = 0  # lines whose HTTP request the gateway may hold (sent, answer not read yet)
        self._forwarded: dict[str, RequestRecord] = {}  # interactive requests forwarded and not seen ended
        self._interactive_until = float("-inf")  # when interactive work was last known to be on the gateway
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._url = ""
        self._headers: dict[str, str] = {}

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, gateway_url: str, headers: dict[str, str]) -> None:
        self._url = gateway_url.rstrip("/") + "/"
        self._headers = {**headers, "X-Claw-Client": "batch"}
        self._http = aiohttp.ClientSession(
            base_url=self._url,
            timeout=aiohttp.ClientTimeout(total=None, connect=10),
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
        )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="claw-batch-drain")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        tasks = [t for job in self.jobs.values() for t in job.in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        self._wake.set()

    # ---- what others ask -----------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return sum(len(job.in_flight) for job in self.jobs.values())

    @property
    def running(self) -> int:
        """Lines holding a backend's slot (sent, answer not in yet)."""
        return sum(len(job.running) for job in self.jobs.values())

    def busy(self) -> bool:
        """Batch work runs or waits to run (the governor keeps the clocks up meanwhile)."""
        return any(job.in_flight or (job.status == "in_progress" and job.queued) for job in self.jobs.values())

    def live(self, batch_id: str) -> dict[str, Any] | None:
        job = self.jobs.get(batch_id)
        if job is None:
            return None
        return {"in_flight": len(job.in_flight), "eta_s": job.eta_s(self.slots)}

    # ---- the loop ----------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that comes as the event is set
                async with asyncio.timeout(self._tick_s()):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.step()
            except Exception:  # the drain must never stop for one bad step
                log.exception("batch drain step failed")
                await asyncio.sleep(IDLE_TICK_S)

    def _tick_s(self) -> float:
        now = self.clock()
        waiting = any(job.runnable(now) for job in self.jobs.values())
        return BUSY_TICK_S if waiting else IDLE_TICK_S

    async def step(self) -> None:
        now = self.clock()
        for job in list(self.jobs.values()):
            await self.service.advance(job, now)
        await self._start_lines(now)

    def _interactive_now(self) -> int:
        """Interactive requests the gateway holds: all it holds but the batch lines sent to it."""
        return max(0, self._interactive() - self._at_gateway)

    def interactive_seen(self, now: float) -> bool:
        """Interactive work is on the gateway now, or ended less than `quiet_s` ago."""
        holds = self._interactive_now() > 0
        self._forget_ended(now, every=not holds)  # the gateway holds none: every one has ended
        if holds:
            self._interactive_until = max(self._interactive_until, now)
            return True
        return now - self._interactive_until < self.quiet_s

    def _order(self, jobs: list[JobState], now: float) -> list[JobState]:
        return sorted(jobs, key=lambda j: (not j.urgent(now, self.slots), not self._resident(j.model), j.created_at))

    def _room(self, job: JobState, now: float) -> int:
        if job.urgent(now, self.slots) or not self.interactive_seen(now):
            return self.slots - self.running
        return 0

    async def _start_lines(self, now: float) -> None:
        for job in self._order([j for j in self.jobs.values() if j.runnable(now)], now):
            wanted = min(self._room(job, now), job.queued)
            if wanted <= 0:
                continue
            claimed = await self.service.claim(job, wanted)
            if len(claimed) < wanted:  # the store has fewer queued lines than counted: trust the store
                job.queued = len(claimed)
            for line, attempts in claimed:
                job.queued -= 1
                job.running[line.custom_id] = self.clock()
                job.backends.pop(line.custom_id, None)  # not forwarded yet
                task = asyncio.get_running_loop().create_task(
                    self._line(job, line, attempts), name=f"claw-batch-{job.id}-{line.index}"
                )
                job.in_flight[line.custom_id] = task

    # ---- what the gateway tells --------------------------------------------------------------------------------
    async def before_forward(self, record: RequestRecord) -> None:
        """The gateway's hook, called just before it sends a request (interactive or a batch line) to a backend."""
        try:
            self.forwarded(record)
        except Exception:  # the request goes on whatever the drain's trouble
            log.exception("batch drain: the gateway's forward of %s", record.id)

    def forwarded(self, record: RequestRecord) -> None:
        now = self.clock()
        if record.batch:
            self._line_forwarded(record.batch, record.backend, now)
            return
        self._forget_ended(now)
        self._forwarded[record.id] = record
        self._interactive_until = max(self._interactive_until, now)
        if self.preempt:
            self._free_slot(record.backend, now)
        self.wake()

    def _forget_ended(self, now: float, every: bool = False) -> None:
        for request_id, record in list(self._forwarded.items()):
            if record.t_end is not None or every:
                del self._forwarded[request_id]
                self._interactive_until = max(self._interactive_until, record.t_end or now)

    def _interactive_on(self, backend: str | None) -> int:
        return sum(1 for r in self._forwarded.values() if r.backend == backend and r.t_end is None)

    def _free_slot(self, backend: str | None, now: float) -> None:
        """Cancel the newest batch lines on `backend` (or still on their way to one) until the interactive requests
        there have a slot each; the other lines finish."""
        lines = [
            (started, job, custom_id)
            for job in self.jobs.values()
            for custom_id, started in job.running.items()
            if job.backends.get(custom_id, backend) == backend and custom_id in job.in_flight
            if not job.in_flight[custom_id].cancelling()
        ]
        excess = self._interactive_on(backend) + len(lines) - self.slots
        newest_first = sorted(lines, key=lambda item: item[0], reverse=True)
        for _, job, custom_id in newest_first:
            if excess <= 0:
                break
            if not job.urgent(now, self.slots):
                self._cancel(job, custom_id)
                excess -= 1

    def _line_forwarded(self, batch: str, backend: str | None, now: float) -> None:
        job_id, _, custom = batch.partition("/")
        job = self.jobs.get(job_id)
        custom_id = unquote(custom)
        if job is None or custom_id not in job.in_flight:
            return
        job.backends[custom_id] = backend
        if self.preempt and self._interactive_on(backend) and not job.urgent(now, self.slots):
            self._cancel(job, custom_id)  # it started just as interactive work came: it yields before it runs

    def _cancel(self, job: JobState, custom_id: str) -> None:
        """Preempt a line. One not sent yet is left alone: it sees the interactive work and gives itself back."""
        task = job.in_flight.get(custom_id)
        if task is not None and custom_id in job.sending and not task.cancelling():
            self.preempted += 1
            job.preempted[custom_id] += 1
            task.cancel("preempted by interactive work")

    # ---- one line ------------------------------------------------------------------------------------------------
    async def _line(self, job: JobState, line: BatchLine, attempts: int) -> None:
        started = self.clock()
        outcome: LineOutcome | None = None
        try:
            try:
                if job.urgent(started, self.slots) or not self.interactive_seen(started):
                    outcome = await self._send(job, line)
                else:  # interactive work came while the line was claimed: it goes back unsent
                    outcome = LineOutcome("requeue", sent=False)
            finally:
                job.running.pop(line.custom_id, None)  # its slot is free while its result is written
        except asyncio.CancelledError:
            outcome = LineOutcome("requeue")
        except Exception as exc:  # a bug must not lose the line: it goes back to the queue
            log.exception("batch line %s/%s failed in claw", job.id, line.custom_id)
            outcome = LineOutcome("retry", error={"code": "claw_error", "message": repr(exc)})
        finally:
            try:
                if outcome is not None:
                    tries = attempts - job.preempted[line.custom_id]  # a preempted attempt is no failed try
                    if outcome.state == "retry" and tries >= self.max_attempts:
                        outcome = LineOutcome(
                            "failed", outcome.status_code, outcome.response, outcome.error, outcome.request_id
                        )
                    if outcome.state == "retry":
                        job.not_before = self.clock() + min(MAX_RETRY_PAUSE_S, 2.0**tries)
                    if outcome.state == "done":
                        job.note_duration(self.clock() - started)
                    await asyncio.shield(self.service.line_finished(job, line, outcome))
            finally:
                # Only once its result is written does the line stop counting as in flight: a job ends after that.
                # A line given back may already run again (claimed while its result was written): leave that be.
                if job.in_flight.get(line.custom_id) is asyncio.current_task():
                    del job.in_flight[line.custom_id]
                    job.backends.pop(line.custom_id, None)
                    if outcome is None or outcome.state != "requeue":
                        job.preempted.pop(line.custom_id, None)
                self.wake()

    async def _send(self, job: JobState, line: BatchLine) -> LineOutcome:
        body = dict(line.body)
        if line.url in ("/v1/chat/completions", "/api/chat", "/api/generate"):
            body["stream"] = False
        body.pop("stream_options", None)
        headers = {**self._headers, "X-Claw-Batch": f"{job.id}/{quote(line.custom_id, safe='')}"}
        http = self._http
        if http is None:
            raise RuntimeError("the batch drain is not started")
        self._at_gateway += 1
        job.sending.add(line.custom_id)
        try:
            async with http.post(line.url.lstrip("/"), json=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
                request_id = response.headers.get("x-claw-request-id")
        except (aiohttp.ClientError, OSError) as exc:
            return LineOutcome("retry", error={"code": "connection_error", "message": f"claw's gateway: {exc}"})
        finally:
            self._at_gateway -= 1
            job.sending.discard(line.custom_id)
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = {"text": raw.decode("utf-8", "replace")[:2000]}
        if 200 <= status < 300:
            return LineOutcome("done", status, answer, None, request_id)
        state = "retry" if status in RETRY_STATUSES else "failed"
        return LineOutcome(state, status, answer, None, request_id)
