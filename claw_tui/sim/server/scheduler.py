"""Runners and scheduling: models loaded on the simulated GPUs (load delay, VRAM, keep_alive expiry), the
bounded queue, `num_parallel` slots per model, and the generation of answers that puts work on the GPUs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any

from claw_tui.sim.gpu import SimGPU
from claw_tui.sim.models import (
    CATALOGUE,
    GIB,
    MIB,
    InstalledModel,
    canonical_name,
)
from claw_tui.sim.server.faults import Faults, StreamPlan
from claw_tui.sim.server.options import DEFAULT_OPTIONS, SIM_TOKENS_OPTION, apply_options
from claw_tui.sim.server.wire import (
    BUSY_MESSAGE,
    FOREVER,
    STREAM_ERROR_MESSAGE,
    RequestError,
    RunnerGone,
    SimulatedConnectionDrop,
    StreamCut,
    keep_alive_seconds,
)
from claw_tui.sim.text import Answer, count_tokens, generate_answer


class Runner:
    """One loaded (or loading) model on one GPU, like an `ollama runner` process."""

    def __init__(
        self, model: InstalledModel, gpu: SimGPU, num_ctx: int, parallel: int, size_bytes: int, vram_bytes: int
    ) -> None:
        self.model = model
        self.name = model.name
        self.gpu = gpu
        self.num_ctx = num_ctx
        self.parallel = parallel
        self.size_bytes = size_bytes
        self.vram_bytes = vram_bytes
        self.weights_digest = model.weights_digest
        self.ready = asyncio.Event()
        self.unloaded = asyncio.Event()
        self.load_task: asyncio.Task[None] | None = None
        self.users = 0  # requests holding this runner: loading, queued for a slot, or generating
        self.active = 0  # requests holding a slot
        self.slot_waiters: deque[asyncio.Future[None]] = deque()
        self.keep_alive_s = 300.0
        self.expires_at: float | None = None  # wall time; None while in use
        self.expiry_handle: asyncio.TimerHandle | None = None
        self.stale = False  # unload as soon as idle; accept no new users
        self.last_used = time.monotonic()

    @property
    def offload_factor(self) -> float:
        """Decode slows down a lot when part of the model spilled to the CPU."""
        return 1.0 if self.vram_bytes >= self.size_bytes else 0.25

    def usable_for(self, model: InstalledModel, num_ctx: int) -> bool:
        return not self.stale and self.num_ctx == num_ctx and self.weights_digest == model.weights_digest


@dataclass
class Final:
    done_reason: str
    prompt_tokens: int
    eval_count: int
    total_ns: int
    load_ns: int
    prompt_eval_ns: int
    eval_ns: int

    def ollama_metrics(self) -> dict[str, int]:
        pairs = (
            ("total_duration", self.total_ns),
            ("load_duration", self.load_ns),
            ("prompt_eval_count", self.prompt_tokens),
            ("prompt_eval_duration", self.prompt_eval_ns),
            ("eval_count", self.eval_count),
            ("eval_duration", self.eval_ns),
        )
        return {key: value for key, value in pairs if value}


@dataclass
class GenRequest:
    """One inference request, surface-independent."""

    model: InstalledModel
    model_label: str  # the name as the client wrote it (echoed back in responses)
    prompt: str  # the text the answer is about (last user message or prompt)
    context: str  # the whole conversation, to vary the wording
    prompt_tokens: int
    options: dict[str, Any]
    keep_alive_s: float
    think: bool | str = False
    response_format: Any = None
    arrived: float = field(default_factory=time.monotonic)


class Admission:
    """A place in the pending queue, released exactly once."""

    def __init__(self, state: SimState) -> None:
        self._state = state
        self._held = True
        state.pending += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._state.pending -= 1


class SimState:
    """The simulated server's state: the model library, loaded runners, queues, counters and fault hooks.

    Fault hooks (each wears off after the requests it names; `clear_faults()` drops them all):
    - `fail_next(n=1, status=500, message=None, paths=None)`: the next n requests to `paths` (default: the
      inference endpoints /api/chat, /api/generate, /api/embed, /api/embeddings, /v1/chat/completions,
      /v1/completions, /v1/embeddings) are answered at once with `status` and an error body in the surface's
      shape (Ollama `{"error": ...}`, OpenAI `{"error": {...}}` under /v1). The default message fits the status
      (500: a runner crash, 503: the busy message).
    - `die_mid_stream_after(n_chunks, requests=1)`: the next inference response drops the TCP connection after
      n_chunks answer chunks (a non-streamed one drops before its body): the client sees a broken stream.
    - `cut_stream_after(n_chunks, requests=1)`: after n_chunks chunks the answer just ends, cleanly, without its
      final chunk (no `done`, no finish_reason, no [DONE]).
    - `error_mid_stream_after(n_chunks, message=..., requests=1)`: after n_chunks chunks the stream ends with an
      error line (`{"error": ...}` NDJSON, status 200); a non-streamed response becomes a 500 with that error.
    - `stall_next(seconds, after_chunks=0, requests=1)`: the next response pauses `seconds` (wall time, not
      scaled by speed) after after_chunks chunks: 0 stalls before the first token.

    Observers for tests: `pending` (queued requests), `in_flight` (requests holding a slot), `requests_total`,
    `loaded()` (name → Runner, ready ones), `runners`, `models`.
    """

    def __init__(
        self,
        gpus: list[SimGPU],
        *,
        seed: int = 0,
        openai_only: bool = False,
        num_parallel: int = 2,
        max_queue: int = 16,
        speed: float = 1.0,
        keep_alive_default_s: float = 300,
        max_loaded_models: int | None = None,
        default_num_ctx: int | None = None,
        check_host: bool = True,
    ) -> None:
        if not gpus:
            raise ValueError("the simulator needs at least one SimGPU")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.gpus = list(gpus)
        self.seed = seed
        self.openai_only = openai_only
        self.num_parallel = max(1, int(num_parallel))
        self.max_queue = max(0, int(max_queue))
        self.speed = float(speed)
        self.keep_alive_default_s = FOREVER if openai_only else keep_alive_seconds(keep_alive_default_s)
        self.max_loaded_models = max_loaded_models or 3 * len(self.gpus)
        self.check_host = check_host
        self.models: dict[str, InstalledModel] = {spec.name: InstalledModel.from_spec(spec) for spec in CATALOGUE}
        self.pullable = {spec.name: spec for spec in CATALOGUE}
        self.runners: dict[str, Runner] = {}
        self.faults = Faults()
        self.pending = 0
        self.in_flight = 0
        self.requests_total = 0
        self.closing = False
        self._id_counter = 0
        self.default_num_ctx = default_num_ctx or _num_ctx_for_vram(sum(g.vram_total_mib for g in self.gpus) * MIB)

    # ---- fault hooks ----------------------------------------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: int = 500, message: str | None = None, paths: Iterable[str] | None = None
    ) -> None:
        self.faults.fail_next(n, status, message, paths)

    def die_mid_stream_after(self, n_chunks: int, requests: int = 1) -> None:
        self.faults.die_mid_stream_after(n_chunks, requests)

    def error_mid_stream_after(self, n_chunks: int, message: str = STREAM_ERROR_MESSAGE, requests: int = 1) -> None:
        self.faults.error_mid_stream_after(n_chunks, message, requests)

    def cut_stream_after(self, n_chunks: int, requests: int = 1) -> None:
        self.faults.cut_stream_after(n_chunks, requests)

    def stall_next(self, seconds: float, after_chunks: int = 0, requests: int = 1) -> None:
        self.faults.stall_next(seconds, after_chunks, requests)

    def clear_faults(self) -> None:
        self.faults.clear()

    # ---- library --------------------------------------------------------------------------------------------

    def find_model(self, name: str) -> InstalledModel | None:
        if not name:
            return None
        return self.models.get(canonical_name(name))

    def next_id(self) -> int:
        self._id_counter += 1
        return self._id_counter

    def loaded(self) -> dict[str, Runner]:
        self.reap_expired()
        return {name: r for name, r in self.runners.items() if r.ready.is_set()}

    def resolve_options(self, model: InstalledModel, request_options: Any) -> dict[str, Any]:
        options = dict(DEFAULT_OPTIONS)
        options["num_ctx"] = self.default_num_ctx
        apply_options(options, model.parameters)
        apply_options(options, request_options)
        return options

    def runner_num_ctx(self, model: InstalledModel, options: dict[str, Any]) -> int:
        return max(256, min(int(options["num_ctx"]), model.spec.context_length))

    def keep_alive_or_default(self, keep_alive_s: float | None) -> float:
        if self.openai_only:
            return FOREVER
        return self.keep_alive_default_s if keep_alive_s is None else keep_alive_s

    def admit(self) -> Admission:
        if self.pending >= self.max_queue:
            raise RequestError(503, BUSY_MESSAGE)
        self.requests_total += 1
        return Admission(self)

    # ---- runners --------------------------------------------------------------------------------------------

    async def acquire_runner(self, model: InstalledModel, num_ctx: int, keep_alive_s: float) -> Runner:
        """Return a ready runner for the model, loading (or reloading) it first; the caller holds it as a user."""
        while True:
            runner = self.runners.get(model.name)
            if runner is not None and runner.usable_for(model, num_ctx):
                break
            if runner is not None:
                runner.stale = True
                if runner.users == 0:
                    self._unload(runner)
                else:
                    await runner.unloaded.wait()
                continue
            runner = self._start_runner(model, num_ctx)
            break
        runner.users += 1
        runner.keep_alive_s = keep_alive_s
        runner.expires_at = None
        if runner.expiry_handle is not None:
            runner.expiry_handle.cancel()
            runner.expiry_handle = None
        load_task = runner.load_task
        try:
            if not runner.ready.is_set() and load_task is not None:
                await asyncio.shield(load_task)
        except asyncio.CancelledError:
            self.release_runner(runner)
            task = asyncio.current_task()
            if load_task is not None and load_task.cancelled() and not (task is not None and task.cancelling()):
                raise RunnerGone(f"model '{model.name}' was unloaded while loading") from None
            raise
        except BaseException:
            self.release_runner(runner)
            raise
        return runner

    def release_runner(self, runner: Runner) -> None:
        runner.users -= 1
        runner.last_used = time.monotonic()
        if runner.users > 0 or self.runners.get(runner.name) is not runner:
            return
        if runner.stale or runner.keep_alive_s <= 0 or self.closing:
            self._unload(runner)
            return
        if math.isinf(runner.keep_alive_s):
            runner.expires_at = FOREVER
            return
        runner.expires_at = time.time() + runner.keep_alive_s
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            runner.expiry_handle = loop.call_later(runner.keep_alive_s, self._expire_if_due, runner)

    def expire_runner(self, name: str) -> None:
        """Unload now if idle, else as soon as its requests finish (keep_alive 0 with an empty request)."""
        runner = self.runners.get(name)
        if runner is None:
            return
        runner.keep_alive_s = 0.0
        if runner.users == 0:
            self._unload(runner)

    def invalidate(self, name: str) -> None:
        """The model changed or went away: its runner must not serve new requests."""
        runner = self.runners.get(name)
        if runner is not None:
            runner.stale = True
            if runner.users == 0:
                self._unload(runner)

    def reap_expired(self) -> None:
        now = time.time()
        for runner in list(self.runners.values()):
            if runner.users == 0 and runner.expires_at is not None and runner.expires_at <= now:
                self._unload(runner)

    def unload_all(self) -> None:
        for runner in list(self.runners.values()):
            self._unload(runner)

    async def preload(self, name: str, keep_alive_s: float | None = None) -> Runner:
        """Load a model as an empty request would (for demos and tests)."""
        model = self.find_model(name)
        if model is None:
            raise KeyError(name)
        options = self.resolve_options(model, None)
        runner = await self.acquire_runner(
            model, self.runner_num_ctx(model, options), self.keep_alive_or_default(keep_alive_s)
        )
        self.release_runner(runner)
        return runner

    def close(self) -> None:
        self.closing = True
        self.unload_all()

    def _expire_if_due(self, runner: Runner) -> None:
        runner.expiry_handle = None
        if runner.users > 0 or runner.expires_at is None or self.runners.get(runner.name) is not runner:
            return
        remaining = runner.expires_at - time.time()
        if remaining <= 0.001:
            self._unload(runner)
        else:  # the loop's clock ran ahead of the wall clock: look again when it is really due
            runner.expiry_handle = asyncio.get_running_loop().call_later(remaining, self._expire_if_due, runner)

    def _start_runner(self, model: InstalledModel, num_ctx: int) -> Runner:
        size = model.spec.runtime_bytes(num_ctx, self.num_parallel)
        self._make_room(size)
        gpu = max(self.gpus, key=lambda g: g.vram_free_mib())
        vram = int(max(0.0, min(size, gpu.vram_free_mib() * MIB)))
        runner = Runner(model, gpu, num_ctx, self.num_parallel, size, vram)
        self.runners[model.name] = runner
        runner.load_task = asyncio.get_running_loop().create_task(self._load(runner), name=f"sim-load:{model.name}")
        return runner

    async def _load(self, runner: Runner) -> None:
        spec = runner.model.spec
        extra_gib = (runner.size_bytes - spec.size_bytes) / GIB
        delay = (spec.load_s + 0.05 * extra_gib) / self.speed
        runner.gpu.load_model(runner.name, runner.vram_bytes / MIB)
        handle = runner.gpu.begin_work("load")
        try:
            await asyncio.sleep(delay)
        finally:
            runner.gpu.end_work(handle)
        runner.ready.set()

    def _make_room(self, size: int) -> None:
        def fits() -> bool:
            return any(g.vram_free_mib() * MIB >= size for g in self.gpus)

        idle = sorted((r for r in self.runners.values() if r.users == 0), key=lambda r: r.last_used)
        while idle and (len(self.runners) >= self.max_loaded_models or not fits()):
            self._unload(idle.pop(0))

    def _unload(self, runner: Runner) -> None:
        if runner.unloaded.is_set():
            return
        if self.runners.get(runner.name) is runner:
            del self.runners[runner.name]
        if runner.expiry_handle is not None:
            runner.expiry_handle.cancel()
            runner.expiry_handle = None
        if runner.load_task is not None and not runner.load_task.done():
            runner.load_task.cancel()
        runner.gpu.unload_model(runner.name)
        runner.unloaded.set()

    # ---- slots ----------------------------------------------------------------------------------------------

    async def take_slot(self, runner: Runner) -> None:
        if runner.active < runner.parallel and not runner.slot_waiters:
            runner.active += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        runner.slot_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release_slot(runner)  # the slot was handed over just as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    runner.slot_waiters.remove(waiter)
            raise

    def release_slot(self, runner: Runner) -> None:
        while runner.slot_waiters:
            waiter = runner.slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over: `active` stays the same
                return
        runner.active -= 1

    # ---- generation -----------------------------------------------------------------------------------------

    async def generate(
        self, req: GenRequest, admission: Admission, plan: StreamPlan
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Events of one generation: ("thinking"|"content", token)…, then ("done", Final) or ("error", message)."""
        runner: Runner | None = None
        slot = False
        handle: int | None = None
        try:
            num_ctx = self.runner_num_ctx(req.model, req.options)
            try:
                runner = await self.acquire_runner(req.model, num_ctx, req.keep_alive_s)
            except RunnerGone as exc:
                yield "error", str(exc)
                return
            loaded_at = time.monotonic()
            await self.take_slot(runner)
            slot = True
            admission.release()
            self.in_flight += 1
            handle = runner.gpu.begin_work("prefill")
            prefill_started = time.monotonic()
            await asyncio.sleep(self._prefill_seconds(runner, req.prompt_tokens))
            prefill_ended = time.monotonic()
            runner.gpu.set_phase(handle, "decode")
            tokens, done_reason = self._answer_tokens(req)
            emitted = 0
            due = prefill_ended
            for kind, token in tokens:
                if self.closing:
                    return
                due += self._decode_interval(runner)
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not plan.empty:
                    error = await self._apply_plan(plan, emitted)
                    if error is not None:
                        yield "error", error
                        return
                yield kind, token
                emitted += 1
            if not plan.empty:
                error = await self._apply_plan(plan, emitted)
                if error is not None:
                    yield "error", error
                    return
            ended = time.monotonic()
            yield (
                "done",
                Final(
                    done_reason=done_reason,
                    prompt_tokens=req.prompt_tokens,
                    eval_count=emitted,
                    total_ns=to_ns(ended - req.arrived),
                    load_ns=to_ns(loaded_at - req.arrived),
                    prompt_eval_ns=to_ns(prefill_ended - prefill_started),
                    eval_ns=to_ns(ended - prefill_ended),
                ),
            )
        except StreamCut:
            return  # the stream ends cleanly, without its final chunk
        finally:
            admission.release()
            if handle is not None and runner is not None:
                runner.gpu.end_work(handle)
            if slot and runner is not None:
                self.in_flight -= 1
                self.release_slot(runner)
            if runner is not None:
                self.release_runner(runner)

    async def embed(
        self,
        model: InstalledModel,
        texts: list[str],
        keep_alive_s: float,
        options: dict[str, Any],
        admission: Admission,
    ) -> tuple[list[int], float, float]:
        """Run the embedding work for texts; returns (token counts, load seconds, total seconds)."""
        arrived = time.monotonic()
        runner: Runner | None = None
        slot = False
        handle: int | None = None
        try:
            runner = await self.acquire_runner(model, self.runner_num_ctx(model, options), keep_alive_s)
            loaded_at = time.monotonic()
            await self.take_slot(runner)
            slot = True
            admission.release()
            self.in_flight += 1
            counts = [min(count_tokens(text), runner.num_ctx) for text in texts]
            handle = runner.gpu.begin_work("prefill")
            await asyncio.sleep(self._prefill_seconds(runner, sum(counts)))
            return counts, loaded_at - arrived, time.monotonic() - arrived
        finally:
            admission.release()
            if handle is not None and runner is not None:
                runner.gpu.end_work(handle)
            if slot and runner is not None:
                self.in_flight -= 1
                self.release_slot(runner)
            if runner is not None:
                self.release_runner(runner)

    async def load_only(
        self, model: InstalledModel, options: dict[str, Any], keep_alive_s: float, admission: Admission
    ) -> None:
        runner: Runner | None = None
        try:
            runner = await self.acquire_runner(model, self.runner_num_ctx(model, options), keep_alive_s)
        finally:
            admission.release()
            if runner is not None:
                self.release_runner(runner)

    async def _apply_plan(self, plan: StreamPlan, emitted: int) -> str | None:
        """Act out the faults due after `emitted` chunks; returns an error message to end the stream with."""
        if plan.stall_after == emitted:
            plan.stall_after = None
            await asyncio.sleep(plan.stall_s)
        if plan.drop_after == emitted:
            raise SimulatedConnectionDrop(f"connection dropped after {emitted} chunks")
        if plan.cut_after == emitted:
            raise StreamCut
        if plan.error_after == emitted:
            return plan.error_message
        return None

    def _answer_tokens(self, req: GenRequest) -> tuple[list[tuple[str, str]], str]:
        options = req.options
        option_seed = options.get("seed")
        answer: Answer = generate_answer(
            req.prompt,
            seed=self.seed,
            model=req.model.name,
            temperature=options.get("temperature", 0.8),
            option_seed=None if option_seed is None or option_seed < 0 else option_seed,
            think=req.think,
            response_format=req.response_format,
            exact_tokens=options.get(SIM_TOKENS_OPTION),
            context=req.context,
        )
        content = list(answer.content)
        done_reason = "stop"
        content = _cut_at_stop(content, options.get("stop") or [])
        tokens = [("thinking", t) for t in answer.thinking] + [("content", t) for t in content]
        limit = options.get("num_predict", -1)
        if limit > 0 and len(tokens) > limit:
            tokens = tokens[:limit]
            done_reason = "length"
        return tokens, done_reason

    def _concurrency_factor(self, gpu: SimGPU) -> float:
        return 1.0 / (1.0 + 0.08 * max(0, gpu.work_in_flight() - 1))

    def _prefill_seconds(self, runner: Runner, prompt_tokens: int) -> float:
        gpu = runner.gpu
        rate = runner.model.spec.prefill_tok_s * self.speed * gpu.prefill_speed_factor()
        rate *= self._concurrency_factor(gpu) * runner.offload_factor
        return 0.004 / self.speed + prompt_tokens / rate

    def _decode_interval(self, runner: Runner) -> float:
        gpu = runner.gpu
        rate = runner.model.spec.decode_tok_s * self.speed * gpu.decode_speed_factor()
        rate *= self._concurrency_factor(gpu) * runner.offload_factor
        return 1.0 / max(rate, 1e-6)


def _num_ctx_for_vram(total_vram_bytes: float) -> int:
    """Ollama's default context by VRAM tier (capped later at each model's trained context)."""
    if total_vram_bytes >= 47 * GIB:
        return 262144
    if total_vram_bytes >= 23 * GIB:
        return 32768
    return 4096


def to_ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


def _cut_at_stop(tokens: list[str], stops: list[str]) -> list[str]:
    stops = [s for s in stops if s]
    if not stops:
        return tokens
    text = "".join(tokens)
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut < 0:
        return tokens
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) <= cut:
            kept.append(token)
            length += len(token)
        else:
            if cut > length:
                kept.append(token[: cut - length])
            break
    return kept
