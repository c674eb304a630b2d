"""The batch drain: runs batch lines through claw's own gateway when interactive traffic leaves room for them.

Rules, looked at whenever something changes (a job arrives, a line ends, an interactive request opens) and at least
every `IDLE_TICK_S` (every `BUSY_TICK_S` while queued lines wait for interactive work to end):
- Interactive traffic first. The backend generates `slots` requests at once per model; a batch line starts only
  while `interactive in flight + batch lines in flight < slots`, so no batch line starts while interactive work
  waits for a slot. A batch line in flight finishes (it yields at the next request boundary); with `preempt` on,
  an interactive request that finds every slot taken cancels the newest batch line instead, which runs again later.
- Among jobs with work, those whose model is resident on a backend come first (no load to pay for), then the oldest.
- Lines start in groups that fill the free slots, so the backend decodes them together (its energy per token is
  lower at full slots).
- A job that would miss its completion window at the rate its lines run is urgent: it runs whatever the
  interactive traffic (still within the slots), and past its window its remaining lines expire.

Lines go to the gateway over HTTP with `X-Claw-Client: batch` and `X-Claw-Batch: <job>/<line>`, so they are metered
like any request and the ledger's records say which line they served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

if TYPE_CHECKING:
    from claw_tui.batch.service import BatchService

from claw_tui.batch.lines import BatchLine

log = logging.getLogger(__name__)

IDLE_TICK_S = 1.0
BUSY_TICK_S = 0.05
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
    in_flight: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
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


class Drain:
    """The scheduler. `interactive()` says how many interactive requests the gateway holds now; `resident(model)`
    whether a backend has the model loaded; `finished(job, line, outcome, attempts)` writes a result."""

    def __init__(
        self,
        service: BatchService,
        *,
        slots: int,
        preempt: bool,
        max_attempts: int,
        interactive: Callable[[], int],
        resident: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.slots = slots
        self.preempt = preempt
        self.max_attempts = max_attempts
        self._interactive = interactive
        self._resident = resident
        self.clock = clock
        self.jobs: dict[str, JobState] = {}
        self.preempted = 0
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
                await asyncio.wait_for(self._wake.wait(), self._tick_s())
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
        self._preempt_if_needed(now)
        await self._start_lines(now)

    def _interactive_now(self) -> int:
        """Interactive requests the gateway holds: all it holds but the batch lines in flight."""
        return max(0, self._interactive() - self.in_flight)

    def _order(self, jobs: list[JobState], now: float) -> list[JobState]:
        return sorted(jobs, key=lambda j: (not j.urgent(now, self.slots), not self._resident(j.model), j.created_at))

    async def _start_lines(self, now: float) -> None:
        for job in self._order([j for j in self.jobs.values() if j.runnable(now)], now):
            urgent = job.urgent(now, self.slots)
            room = self.slots - self.in_flight - (0 if urgent else self._interactive_now())
            if room <= 0:
                continue
            wanted = min(room, job.queued)
            claimed = await self.service.claim(job, wanted)
            if len(claimed) < wanted:  # the store has fewer queued lines than counted: trust the store
                job.queued = len(claimed)
            for line, attempts in claimed:
                job.queued -= 1
                job.started[line.custom_id] = self.clock()
                task = asyncio.get_running_loop().create_task(
                    self._line(job, line, attempts), name=f"claw-batch-{job.id}-{line.index}"
                )
                job.in_flight[line.custom_id] = task

    def _preempt_if_needed(self, now: float) -> None:
        if not self.preempt:
            return
        excess = self._interactive_now() + self.in_flight - self.slots
        if excess <= 0 or self._interactive_now() == 0:
            return
        running = [
            (job.started.get(cid, 0.0), job, cid)
            for job in self.jobs.values()
            if not job.urgent(now, self.slots)
            for cid in job.in_flight
        ]
        for _, job, cid in sorted(running, key=lambda item: item[0], reverse=True)[:excess]:
            task = job.in_flight.get(cid)
            if task is not None and not task.done():
                self.preempted += 1
                task.cancel("preempted by interactive work")

    # ---- one line ------------------------------------------------------------------------------------------------
    async def _line(self, job: JobState, line: BatchLine, attempts: int) -> None:
        started = self.clock()
        outcome: LineOutcome | None = None
        try:
            outcome = await self._send(job, line)
        except asyncio.CancelledError:
            outcome = LineOutcome("requeue")
        except Exception as exc:  # a bug must not lose the line: it goes back to the queue
            log.exception("batch line %s/%s failed in claw", job.id, line.custom_id)
            outcome = LineOutcome("retry", error={"code": "claw_error", "message": repr(exc)})
        finally:
            try:
                if outcome is not None:
                    if outcome.state == "retry" and attempts >= self.max_attempts:
                        outcome = LineOutcome(
                            "failed", outcome.status_code, outcome.response, outcome.error, outcome.request_id
                        )
                    if outcome.state == "retry":
                        job.not_before = self.clock() + min(MAX_RETRY_PAUSE_S, 2.0**attempts)
                    if outcome.state == "done":
                        job.note_duration(self.clock() - started)
                    await asyncio.shield(self.service.line_finished(job, line, outcome))
            finally:
                # Only once its result is written does the line stop counting as in flight: a job ends after that.
                job.in_flight.pop(line.custom_id, None)
                job.started.pop(line.custom_id, None)
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
        try:
            async with http.post(line.url.lstrip("/"), json=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
                request_id = response.headers.get("x-claw-request-id")
        except (aiohttp.ClientError, OSError) as exc:
            return LineOutcome("retry", error={"code": "connection_error", "message": f"claw's gateway: {exc}"})
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = {"text": raw.decode("utf-8", "replace")[:2000]}
        if 200 <= status < 300:
            return LineOutcome("done", status, answer, None, request_id)
        state = "retry" if status in RETRY_STATUSES else "failed"
        return LineOutcome(state, status, answer, None, request_id)
