"""The drain's scheduling rule with an injected clock: interactive work first, the quiet period after it, urgent jobs,
and preemption of just enough lines on the interactive request's backend.

The drain runs against a small stand-in for claw's gateway (an HTTP server that holds each batch line until the test
answers it, and calls the drain's `before_forward` hook as the gateway does) and a service that keeps the lines in
memory, so each test decides exactly when requests arrive, end and are forwarded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import unquote

from aiohttp import web

from claw_tui.batch.drain import Drain, JobState, LineOutcome
from claw_tui.batch.lines import BatchLine
from claw_tui.records import RequestRecord

DAY_S = 86400.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Service:
    """What the drain calls on its service, in memory: queued lines, claims, results."""

    def __init__(self) -> None:
        self.queued: dict[str, list[BatchLine]] = {}
        self.attempts: Counter[str] = Counter()
        self.claims: list[tuple[str, int]] = []
        self.results: list[tuple[str, str]] = []  # (custom_id, outcome state)

    def add(self, drain: Drain, job_id: str, count: int, *, deadline_s: float = DAY_S) -> JobState:
        self.queued[job_id] = [
            BatchLine(i, f"{job_id}-{i}", "/v1/chat/completions", {"model": "qwen3:8b", "messages": []})
            for i in range(count)
        ]
        now = drain.clock()
        job = JobState(job_id, now, now + deadline_s, "qwen3:8b", "in_progress", count)
        drain.jobs[job_id] = job
        return job

    async def advance(self, job: JobState, now: float) -> None:
        pass

    async def claim(self, job: JobState, count: int) -> list[tuple[BatchLine, int]]:
        self.claims.append((job.id, count))
        lines, self.queued[job.id] = self.queued[job.id][:count], self.queued[job.id][count:]
        self.attempts.update(line.custom_id for line in lines)
        return [(line, self.attempts[line.custom_id]) for line in lines]

    async def line_finished(self, job: JobState, line: BatchLine, outcome: LineOutcome) -> None:
        self.results.append((line.custom_id, outcome.state))
        if outcome.state in ("done", "failed"):
            job.done += 1
            return
        if not outcome.sent:
            self.attempts[line.custom_id] -= 1
        self.queued[job.id].insert(0, line)
        job.queued += 1


class Gateway:
    """Holds each batch line until `answer(custom_id, status)`; tells the drain where each line is forwarded."""

    def __init__(self, drain: Drain, backend_of: dict[str, str]) -> None:
        self.drain = drain
        self.backend_of = backend_of  # custom_id -> backend; the default one is "a"
        self.waiting: dict[str, asyncio.Future[int]] = {}
        self.arrived: list[str] = []
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.line)
        self.runner = web.AppRunner(app, handler_cancellation=True)  # a line the drain cancels leaves at once
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def line(self, request: web.Request) -> web.Response:
        tag = request.headers["X-Claw-Batch"]
        custom_id = unquote(tag.partition("/")[2])
        self.arrived.append(custom_id)
        backend = self.backend_of.get(custom_id, "a")
        self.drain.forwarded(
            RequestRecord(id=f"line-{len(self.arrived)}", model="m", endpoint="", batch=tag, backend=backend)
        )
        answer = self.waiting[custom_id] = asyncio.get_running_loop().create_future()
        try:
            status = await answer
        finally:
            self.waiting.pop(custom_id, None)
        return web.json_response({"ok": status < 400}, status=status)

    def answer(self, custom_id: str, status: int = 200) -> None:
        self.waiting[custom_id].set_result(status)

    async def stop(self) -> None:
        for answer in self.waiting.values():
            answer.cancel()
        if self.runner is not None:
            await self.runner.cleanup()


class Harness:
    def __init__(self, *, slots: int = 2, quiet_s: float = 0.0, max_attempts: int = 3, backends=None) -> None:
        self.clock = Clock()
        self.gateway_holds = 0  # interactive requests the gateway holds (the drain adds its lines itself)
        self.service = Service()
        self.drain = Drain(
            self.service,  # type: ignore[arg-type]
            slots=slots,
            preempt=True,
            quiet_s=quiet_s,
            max_attempts=max_attempts,
            interactive=lambda: self.gateway_holds + len(self.gateway.waiting),
            resident=lambda model: True,
            clock=self.clock,
        )
        self.gateway = Gateway(self.drain, backends or {})
        self._ids = 0

    async def __aenter__(self) -> Harness:
        self.drain.start(await self.gateway.start(), {})
        return self

    async def __aexit__(self, *exc: object) -> None:
        async with asyncio.timeout(10):
            await self.drain.stop()
            await self.gateway.stop()

    def interactive(self, backend: str = "a") -> RequestRecord:
        """An interactive request arrives and is forwarded to `backend`."""
        self._ids += 1
        self.gateway_holds += 1
        record = RequestRecord(id=f"chat-{self._ids}", model="qwen3:8b", endpoint="/api/chat", backend=backend)
        self.drain.forwarded(record)
        return record

    def end(self, record: RequestRecord) -> None:
        record.t_end = self.clock.now
        record.status = "ok"
        self.gateway_holds -= 1
        self.drain.wake()

    async def until(self, predicate, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)


async def test_no_line_starts_while_interactive_work_is_on_the_gateway_nor_within_quiet_s_after():
    async with Harness(quiet_s=2.0) as h:
        chat = h.interactive()
        h.service.add(h.drain, "batch_a", 4)
        h.drain.wake()
        await h.drain.step()
        assert h.service.claims == []

        h.clock.now += 1.0
        h.end(chat)  # ends at t+1: lines may start at t+3
        h.clock.now += 1.9
        await h.drain.step()
        assert h.service.claims == []

        h.clock.now += 0.1
        await h.until(lambda: len(h.gateway.arrived) == 2)
        assert h.service.claims == [("batch_a", 2)]  # a group that fills the slots


async def test_a_request_waiting_at_the_gateway_holds_lines_back_too():
    async with Harness() as h:
        h.gateway_holds = 1  # not forwarded yet (waiting for admission)
        h.service.add(h.drain, "batch_a", 2)
        await h.drain.step()
        assert h.service.claims == []
        h.gateway_holds = 0
        await h.until(lambda: len(h.gateway.arrived) == 2)


async def test_an_urgent_job_starts_whatever_the_interactive_traffic_and_is_never_preempted():
    async with Harness() as h:
        h.interactive()
        h.service.add(h.drain, "batch_u", 2, deadline_s=3.0)  # 2 lines at ~2 s each cannot wait
        h.drain.wake()
        await h.until(lambda: len(h.gateway.arrived) == 2)
        h.interactive()
        h.interactive()
        assert h.drain.preempted == 0 and len(h.gateway.waiting) == 2
        for custom_id in list(h.gateway.waiting):
            h.gateway.answer(custom_id)
        await h.until(lambda: h.service.results == [("batch_u-0", "done"), ("batch_u-1", "done")])


async def test_an_interactive_request_cancels_just_enough_lines_on_its_backend():
    async with Harness() as h:
        h.service.add(h.drain, "batch_a", 3)
        h.drain.wake()
        await h.until(lambda: len(h.gateway.waiting) == 2)

        first = h.interactive("a")  # the backend's two slots were both batch lines: one yields
        await h.until(lambda: [state for _, state in h.service.results] == ["requeue"])
        assert h.drain.preempted == 1 and h.drain.running == 1 and len(h.gateway.waiting) == 1  # the other runs on

        h.interactive("b")  # another backend: nothing to free here
        h.clock.now += 0.5
        await h.drain.step()
        assert h.drain.preempted == 1 and h.drain.running == 1  # and no new line starts beside interactive work

        h.interactive("a")  # a second interactive request there takes the last slot
        await h.until(lambda: h.drain.running == 0)
        assert h.drain.preempted == 2

        h.end(first)
        assert h.drain.running == 0
        assert h.service.queued["batch_a"] and not h.service.claims[1:]


async def test_lines_on_another_backend_keep_running():
    async with Harness(backends={"batch_a-0": "b", "batch_a-1": "b"}) as h:
        h.service.add(h.drain, "batch_a", 2)
        h.drain.wake()
        await h.until(lambda: len(h.gateway.waiting) == 2)
        h.interactive("a")
        h.interactive("a")
        await h.drain.step()
        assert h.drain.preempted == 0 and h.drain.running == 2


async def test_a_preempted_try_does_not_count_against_max_attempts():
    async with Harness(max_attempts=2) as h:
        h.service.add(h.drain, "batch_a", 1)
        h.drain.wake()
        await h.until(lambda: len(h.gateway.waiting) == 1)
        chats = [h.interactive(), h.interactive()]  # two interactive requests on a two-slot backend: the line yields
        await h.until(lambda: h.service.results == [("batch_a-0", "requeue")])
        for chat in chats:
            h.end(chat)
        await h.until(lambda: len(h.gateway.waiting) == 1)
        h.gateway.answer("batch_a-0", 503)
        # attempt 2, but the first was preempted: one failed try of two allowed, so it is tried again
        await h.until(lambda: len(h.service.results) == 2)
        assert h.service.results[-1] == ("batch_a-0", "retry")


async def test_a_line_claimed_just_as_interactive_work_arrives_goes_back_unsent():
    async with Harness() as h:
        h.service.add(h.drain, "batch_a", 1)
        claim = h.service.claim

        async def claim_then_interactive(job, count):
            claimed = await claim(job, count)
            h.interactive()  # forwarded while the line was being claimed
            return claimed

        h.service.claim = claim_then_interactive  # type: ignore[method-assign]
        await h.drain.step()
        await h.until(lambda: h.service.results == [("batch_a-0", "requeue")])
        assert h.gateway.arrived == [] and h.service.attempts["batch_a-0"] == 0  # not sent: no attempt


async def test_a_line_given_back_may_run_again_while_its_last_try_is_still_written():
    async with Harness() as h:
        h.service.add(h.drain, "batch_a", 1)
        written = asyncio.Event()
        finish = h.service.line_finished

        async def slow_write(job, line, outcome):
            await finish(job, line, outcome)
            if outcome.state == "requeue":
                await written.wait()  # the queue already has the line back; the rest of the write lingers

        h.service.line_finished = slow_write  # type: ignore[method-assign]
        h.drain.wake()
        await h.until(lambda: len(h.gateway.waiting) == 1)
        first_try = h.drain.jobs["batch_a"].in_flight["batch_a-0"]
        chats = [h.interactive(), h.interactive()]
        await h.until(lambda: h.service.results == [("batch_a-0", "requeue")])
        for chat in chats:
            h.end(chat)
        await h.until(lambda: h.gateway.arrived == ["batch_a-0", "batch_a-0"])  # its second try runs already
        written.set()
        await h.until(first_try.done)
        assert h.drain.in_flight == 1 and h.drain.running == 1  # the end of the first try left the second alone
        h.interactive()
        h.gateway.answer("batch_a-0")
        await h.until(lambda: h.service.results[-1] == ("batch_a-0", "done"))
