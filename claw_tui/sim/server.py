"""The simulated Ollama server: the Ollama HTTP API (and its OpenAI-compatible /v1 surface) over simulated GPUs.

It follows Ollama's wire formats (field names and order, NDJSON streams, nanosecond durations, error texts and
status codes) and its scheduling: the first use of a model loads it (delay, VRAM residency, parking power),
keep_alive expiry unloads it, at most `num_parallel` requests per model generate at once and the rest wait in a
bounded queue (503 beyond `max_queue`). While a request runs, the simulated GPU sees prefill then decode work,
so power follows the traffic. Answers are deterministic (see `claw_tui.sim.text`).

`speed` multiplies every rate and divides every delay: tests use speed=20 or more, the demo uses 1.0.
Tests reach the state and its fault hooks through `SimServer.state` (see `SimState`).
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import ipaddress
import json
import logging
import math
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from claw_tui.httpserver import AppServer
from claw_tui.sim.gpu import SimGPU
from claw_tui.sim.models import (
    CATALOGUE,
    GIB,
    MIB,
    InstalledModel,
    canonical_name,
    is_valid_name,
)
from claw_tui.sim.text import Answer, count_chat_tokens, count_tokens, embedding_vector, generate_answer, normalize

log = logging.getLogger(__name__)

OLLAMA_VERSION = "0.32.15"
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_CRASH_MESSAGE = "llama runner process has terminated: exit status 2"
FOREVER = math.inf
FOREVER_DISPLAY_S = 292 * 365.25 * 86400  # Go's time.Duration(math.MaxInt64), as Ollama shows "forever"
NDJSON = "application/x-ndjson"
JSON_MEDIA = "application/json; charset=utf-8"
SSE_MEDIA = "text/event-stream"
INFERENCE_PATHS = (
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
)
STREAM_ERROR_MESSAGE = "an error was encountered while running the model: unexpected EOF"


# ================================================================================================================
# Wire-format helpers
# ================================================================================================================


def go_json(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, > and & escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text.encode()


def rfc3339_nano(unix_ns: int) -> str:
    """Go's RFC3339Nano in UTC: nanoseconds with trailing zeros trimmed."""
    secs, frac = divmod(unix_ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


def rfc3339_to_unix(text: str) -> int:
    base = text.split(".")[0].rstrip("Z")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """time.ParseDuration, in seconds; raises ValueError with Go's message."""
    original = text
    quoted = '"' + original + '"'
    if text in ("0", "+0", "-0"):
        return 0.0
    if not text:
        raise ValueError(f"time: invalid duration {quoted}")
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while text:
        i = 0
        while i < len(text) and (text[i].isdigit() or text[i] == "."):
            i += 1
        number = text[:i]
        if not number or number == "." or number.count(".") > 1:
            raise ValueError(f"time: invalid duration {quoted}")
        text = text[i:]
        j = 0
        while j < len(text) and not (text[j].isdigit() or text[j] == "."):
            j += 1
        unit = text[:j]
        text = text[j:]
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _GO_UNITS[unit]
    return sign * total


def parse_keep_alive(value: Any) -> float | None:
    """Ollama's keep_alive: a number of seconds or a Go duration string; negative means forever."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RequestError(400, "invalid duration")
    if isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
    else:
        seconds = float(value)
    return FOREVER if seconds < 0 else seconds


_JSON_KINDS = ((bool, "bool"), (str, "string"), ((int, float), "number"), (list, "array"), (dict, "object"))


def json_kind(value: Any) -> str:
    for types, name in _JSON_KINDS:
        if isinstance(value, types):
            return name
    return "null"


def go_syntax_error(body: bytes, exc: json.JSONDecodeError) -> str:
    """Roughly the message Go's JSON decoder gives for the same syntax error."""
    text = exc.doc
    if exc.pos >= len(text.rstrip()):
        return "unexpected EOF"
    ch = text[exc.pos]
    quoted = "'\\''" if ch == "'" else f"'{ch}'"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {quoted} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {quoted} after object key"
    if exc.msg.startswith("Expecting ','"):
        return f"invalid character {quoted} after object key:value pair"
    if exc.msg.startswith("Extra data"):
        return f"invalid character {quoted} after top-level value"
    return f"invalid character {quoted} looking for beginning of value"


class RequestError(Exception):
    """An error answered before any output, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RunnerGone(Exception):
    """The model was unloaded (deleted, replaced, server stopping) while a request waited for it to load."""


class StreamCut(Exception):
    """The answer ends here, cleanly, without its final chunk (a runner that died and a server that shrugged)."""


class SimulatedConnectionDrop(Exception):
    """Raised inside a response to make the server drop the connection mid-stream (a fault hook)."""


class _QuietDropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, SimulatedConnectionDrop):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


_drop_filter = _QuietDropFilter()
logging.getLogger("uvicorn.error").addFilter(_drop_filter)


async def read_json_body(request: Request, go_type: str) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        raise RequestError(400, "missing request body")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestError(400, go_syntax_error(body, exc)) from None
    except UnicodeDecodeError:
        raise RequestError(400, "invalid character looking for beginning of value") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RequestError(400, f"json: cannot unmarshal {json_kind(data)} into Go value of type {go_type}")
    return data


def expect_type(data: dict[str, Any], key: str, kinds: tuple[str, ...], struct_name: str, go_type: str) -> None:
    """Reject a field of the wrong JSON type the way Go's decoder does."""
    value = data.get(key)
    if value is None:
        return
    kind = json_kind(value)
    if kind not in kinds:
        raise RequestError(
            400, f"json: cannot unmarshal {kind} into Go struct field {struct_name}.{key} of type {go_type}"
        )


# ================================================================================================================
# Options
# ================================================================================================================

INT_OPTIONS = frozenset(
    {
        "num_ctx",
        "repeat_last_n",
        "seed",
        "num_predict",
        "draft_num_predict",
        "top_k",
        "num_keep",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
FLOAT_OPTIONS = frozenset(
    {
        "repeat_penalty",
        "temperature",
        "top_p",
        "min_p",
        "typical_p",
        "presence_penalty",
        "frequency_penalty",
    }
)
BOOL_OPTIONS = frozenset({"use_mmap"})
LIST_OPTIONS = frozenset({"stop"})
DEFAULT_OPTIONS: dict[str, Any] = {
    "num_predict": -1,
    "temperature": 0.8,
    "seed": -1,
    "top_k": 40,
    "top_p": 0.9,
    "stop": [],
    "num_batch": 512,
    "num_gpu": -1,
    "repeat_penalty": 1.0,
}
SIM_TOKENS_OPTION = "sim_tokens"  # claw-only: force the answer length (ignored by a real Ollama as unknown)


def apply_options(options: dict[str, Any], values: Any) -> None:
    """api.Options.FromMap: known keys are type-checked, unknown keys ignored, null skipped."""
    if not isinstance(values, dict):
        return
    for key, value in values.items():
        if value is None:
            continue
        if key == SIM_TOKENS_OPTION and isinstance(value, (int, float)) and not isinstance(value, bool):
            options[key] = int(value)
        elif key in INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(500, f'option "{key}" must be of type integer')
            options[key] = int(value)
        elif key in FLOAT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(500, f'option "{key}" must be of type float32')
            options[key] = float(value)
        elif key in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise RequestError(500, f'option "{key}" must be of type boolean')
            options[key] = value
        elif key in LIST_OPTIONS:
            if not isinstance(value, list):
                raise RequestError(500, f'option "{key}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise RequestError(500, f'option "{key}" must be of an array of strings')
            options[key] = list(value)


# ================================================================================================================
# Fault injection
# ================================================================================================================


@dataclass
class _Failure:
    remaining: int
    status: int
    message: str | None
    paths: tuple[str, ...]


@dataclass
class StreamPlan:
    """What the next response's stream will suffer: drop the connection, send an error line, or stall."""

    drop_after: int | None = None
    cut_after: int | None = None
    error_after: int | None = None
    error_message: str = STREAM_ERROR_MESSAGE
    stall_after: int | None = None
    stall_s: float = 0.0

    @property
    def empty(self) -> bool:
        return (
            self.drop_after is None and self.cut_after is None and self.error_after is None and self.stall_after is None
        )


@dataclass
class _StreamFault:
    remaining: int
    kind: str  # "drop" | "cut" | "error" | "stall"
    after: int
    message: str = STREAM_ERROR_MESSAGE
    seconds: float = 0.0


class Faults:
    """Pending faults; each hook affects the next `n`/`requests` matching requests, then wears off."""

    def __init__(self) -> None:
        self._failures: list[_Failure] = []
        self._stream_faults: list[_StreamFault] = []

    def fail_next(
        self, n: int = 1, status: int = 500, message: str | None = None, paths: Iterable[str] | None = None
    ) -> None:
        self._failures.append(_Failure(n, status, message, tuple(paths) if paths else INFERENCE_PATHS))

    def die_mid_stream_after(self, n_chunks: int, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "drop", n_chunks))

    def cut_stream_after(self, n_chunks: int, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "cut", n_chunks))

    def error_mid_stream_after(self, n_chunks: int, message: str = STREAM_ERROR_MESSAGE, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "error", n_chunks, message=message))

    def stall_next(self, seconds: float, after_chunks: int = 0, requests: int = 1) -> None:
        self._stream_faults.append(_StreamFault(requests, "stall", after_chunks, seconds=seconds))

    def clear(self) -> None:
        self._failures.clear()
        self._stream_faults.clear()

    def take_failure(self, path: str) -> tuple[int, str | None] | None:
        for failure in self._failures:
            if failure.remaining > 0 and path in failure.paths:
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                return failure.status, failure.message
        return None

    def take_stream_plan(self) -> StreamPlan:
        plan = StreamPlan()
        for fault in list(self._stream_faults):
            if fault.kind == "drop" and plan.drop_after is None:
                plan.drop_after = fault.after
            elif fault.kind == "cut" and plan.cut_after is None:
                plan.cut_after = fault.after
            elif fault.kind == "error" and plan.error_after is None:
                plan.error_after, plan.error_message = fault.after, fault.message
            elif fault.kind == "stall" and plan.stall_after is None:
                plan.stall_after, plan.stall_s = fault.after, fault.seconds
            else:
                continue
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._stream_faults.remove(fault)
        return plan


def default_failure_message(status: int) -> str:
    if status == 503:
        return BUSY_MESSAGE
    if status == 500:
        return RUNNER_CRASH_MESSAGE
    if status == 429:
        return "too many requests"
    if status == 404:
        return "model not found"
    return "simulated failure"


# ================================================================================================================
# Runners and scheduling
# ================================================================================================================


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
        self.load_task: asyncio.Task | None = None
        self.users = 0  # requests holding this runner: loading, queued for a slot, or generating
        self.active = 0  # requests holding a slot
        self.slot_waiters: deque[asyncio.Future] = deque()
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
        self.keep_alive_default_s = FOREVER if openai_only else parse_keep_alive(keep_alive_default_s)
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
        try:
            if not runner.ready.is_set():
                await asyncio.shield(runner.load_task)
        except asyncio.CancelledError:
            self.release_runner(runner)
            task = asyncio.current_task()
            if runner.load_task.cancelled() and not (task is not None and task.cancelling()):
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

    async def generate(self, req: GenRequest, admission: Admission, plan: StreamPlan) -> AsyncIterator[tuple[str, Any]]:
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
                    total_ns=_ns(ended - req.arrived),
                    load_ns=_ns(loaded_at - req.arrived),
                    prompt_eval_ns=_ns(prefill_ended - prefill_started),
                    eval_ns=_ns(ended - prefill_ended),
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


def _ns(seconds: float) -> int:
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


# ================================================================================================================
# Responses whose status is decided by their first item
# ================================================================================================================


@dataclass(frozen=True)
class ErrorItem:
    """An error from a response generator: a whole body (and status) before any output, else a last line."""

    status: int
    body: bytes
    line: bytes


class DeferredResponse:
    """An ASGI response that sends its headers with the first item, so that an error found before any output
    (a failed load, a fault) still gets its own status, while a client disconnect is noticed at any time —
    also while waiting in the queue or loading — and cancels the generator at once."""

    def __init__(
        self,
        items: AsyncIterator[bytes | ErrorItem],
        *,
        media_type: str,
        streaming: bool,
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
        error_item: Callable[[int, str], ErrorItem] | None = None,
    ) -> None:
        self._items = items
        self._error_item = error_item or ollama_error_item
        self._media_type = media_type
        self._streaming = streaming
        self._on_close = on_close
        self._headers = headers or {}

    async def __call__(self, scope, receive, send) -> None:
        producer = asyncio.ensure_future(self._produce(send))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if producer.done():
                producer.result()
            else:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await producer
        finally:
            watcher.cancel()
            if not producer.done():
                producer.cancel()
            if self._on_close is not None:
                self._on_close()

    async def _produce(self, send) -> None:
        started = False
        try:
            async for item in self._items:
                if isinstance(item, ErrorItem):
                    await self._send_error(send, item, started)
                    return
                if not self._streaming:
                    await self._send_whole(send, 200, item, self._media_type)
                    return
                if not started:
                    await send(
                        {"type": "http.response.start", "status": 200, "headers": self._raw_headers(self._media_type)}
                    )
                    started = True
                await send({"type": "http.response.body", "body": item, "more_body": True})
        except RunnerGone as exc:
            await self._send_error(send, self._error_item(500, str(exc)), started)
            return
        finally:
            await self._items.aclose()
        if started:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await self._send_whole(send, 200, b"", self._media_type)

    async def _send_error(self, send, error: ErrorItem, started: bool) -> None:
        """Before any output the error gets its own status; after, it is the stream's last line."""
        if not started:
            await self._send_whole(send, error.status, error.body, JSON_MEDIA)
            return
        await send({"type": "http.response.body", "body": error.line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_whole(self, send, status: int, body: bytes, media_type: str) -> None:
        headers = self._raw_headers(media_type) + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _raw_headers(self, media_type: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", media_type.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in self._headers.items()]
        return headers


async def _wait_for_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def ollama_error(status: int, message: str) -> Response:
    return Response(go_json({"error": message}), status_code=status, media_type=JSON_MEDIA)


def ollama_error_item(status: int, message: str) -> ErrorItem:
    body = go_json({"error": message})
    return ErrorItem(status, body, body + b"\n")


def openai_error_type(status: int) -> str:
    return {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")


def openai_error_body(status: int, message: str) -> bytes:
    return go_json({"error": {"message": message, "type": openai_error_type(status), "param": None, "code": None}})


def openai_error(status: int, message: str) -> Response:
    return Response(openai_error_body(status, message), status_code=status, media_type=JSON_MEDIA)


def openai_error_item(status: int, message: str) -> ErrorItem:
    body = openai_error_body(status, message)
    return ErrorItem(status, body, b"data: " + body + b"\n\n")


# ================================================================================================================
# Ollama surface
# ================================================================================================================


class OllamaApi:
    def __init__(self, state: SimState) -> None:
        self.state = state

    # ---- simple endpoints -----------------------------------------------------------------------------------

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(self, request: Request) -> Response:
        return Response(go_json({"version": OLLAMA_VERSION}), media_type=JSON_MEDIA)

    async def tags(self, request: Request) -> Response:
        models = sorted(self.state.models.values(), key=lambda m: rfc3339_to_unix(m.modified_at), reverse=True)
        entries = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": m.modified_at,
                "size": m.size_bytes,
                "digest": m.digest,
                "details": m.details(include_parent=False),
            }
            for m in models
        ]
        return Response(go_json({"models": entries}), media_type=JSON_MEDIA)

    async def ps(self, request: Request) -> Response:
        now = time.time()
        entries = []
        for runner in self.state.loaded().values():
            expires = runner.expires_at
            if expires is None:  # in use: the keep-alive starts counting when it finishes
                expires = now + runner.keep_alive_s
            if math.isinf(expires):
                expires = now + FOREVER_DISPLAY_S
            entries.append(
                (
                    expires,
                    {
                        "name": runner.name,
                        "model": runner.name,
                        "size": runner.size_bytes,
                        "digest": runner.model.digest,
                        "details": runner.model.details(include_parent=False),
                        "expires_at": rfc3339_nano(int(expires * 1e9)),
                        "size_vram": runner.vram_bytes,
                        "context_length": runner.num_ctx,
                    },
                )
            )
        entries.sort(key=lambda e: e[0], reverse=True)  # longest remaining first, as Ollama sorts
        return Response(go_json({"models": [entry for _, entry in entries]}), media_type=JSON_MEDIA)

    async def show(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.ShowRequest")
            expect_type(data, "model", ("string",), "ShowRequest", "string")
            name = data.get("model") or data.get("name") or ""
            if not name:
                raise RequestError(400, "model is required")
            model = self.state.find_model(name)
            if model is None:
                raise RequestError(404, f"model '{name}' not found")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        body: dict[str, Any] = {}
        if model.license:
            body["license"] = "\n".join(model.license)
        body["modelfile"] = model.modelfile()
        if model.parameters:
            body["parameters"] = model.show_parameters()
        if model.template:
            body["template"] = model.template
        if model.system:
            body["system"] = model.system
        body["details"] = model.details()
        if model.messages:
            body["messages"] = model.messages
        body["model_info"] = model.model_info()
        if data.get("verbose"):
            body["tensors"] = _tensor_summary(model)
        body["capabilities"] = model.capabilities
        body["modified_at"] = model.modified_at
        return Response(go_json(body), media_type=JSON_MEDIA)

    # ---- inference ------------------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "api.ChatRequest")
            _check_generate_fields(data, "ChatRequest", chat=True)
            model, label = self._require_model(data.get("model"))
            keep_alive = parse_keep_alive(data.get("keep_alive"))
            messages = data.get("messages") or []
            if not messages and keep_alive == 0:
                self.state.expire_runner(model.name)
                return self._json(
                    {
                        "model": label,
                        "created_at": now_rfc3339(),
                        "message": {"role": "assistant", "content": ""},
                        "done_reason": "unload",
                        "done": True,
                    }
                )
            if data.get("tools") and "tools" not in model.capabilities:
                raise RequestError(400, f"registry.ollama.ai/library/{model.name} does not support tools")
            think = _resolve_think(data.get("think"), model, label)
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support chat')
            options = self.state.resolve_options(model, data.get("options"))
            keep_alive_s = self.state.keep_alive_or_default(keep_alive)
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        if not messages:
            return self._load_only_response(
                model,
                options,
                keep_alive_s,
                admission,
                {"model": label, "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True},
            )

        conversation = list(model.messages) + list(messages)
        if conversation and conversation[0].get("role") != "system" and model.system:
            conversation.insert(0, {"role": "system", "content": model.system})
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=_last_user_text(conversation),
            context=_conversation_text(conversation),
            prompt_tokens=count_chat_tokens(conversation),
            options=options,
            keep_alive_s=keep_alive_s,
            think=think,
            response_format=_format_of(data),
            arrived=arrived,
        )
        return self._generation_response(req, admission, _stream_flag(data), chat=True)

    async def generate(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "api.GenerateRequest")
            _check_generate_fields(data, "GenerateRequest", chat=False)
            model, label = self._require_model(data.get("model"))
            keep_alive = parse_keep_alive(data.get("keep_alive"))
            prompt = data.get("prompt") or ""
            if not prompt and keep_alive == 0:
                self.state.expire_runner(model.name)
                return self._json(
                    {"model": label, "created_at": now_rfc3339(), "response": "", "done": True, "done_reason": "unload"}
                )
            if data.get("raw") and (data.get("template") or data.get("system") or data.get("context")):
                raise RequestError(400, "raw mode does not support template, system, or context")
            think = _resolve_think(data.get("think"), model, label)
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support generate')
            options = self.state.resolve_options(model, data.get("options"))
            keep_alive_s = self.state.keep_alive_or_default(keep_alive)
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        if not prompt:
            return self._load_only_response(
                model,
                options,
                keep_alive_s,
                admission,
                {"model": label, "response": "", "done": True, "done_reason": "load"},
            )

        system = data.get("system") or model.system
        if data.get("raw"):
            prompt_tokens = count_tokens(prompt)
        else:
            turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
            prompt_tokens = count_chat_tokens(turns)
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=prompt,
            context=f"{system}\n{data.get('suffix') or ''}",
            prompt_tokens=prompt_tokens,
            options=options,
            keep_alive_s=keep_alive_s,
            think=think,
            response_format=_format_of(data),
            arrived=arrived,
        )
        return self._generation_response(req, admission, _stream_flag(data), chat=False)

    async def embed(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "api.EmbedRequest")
            expect_type(data, "model", ("string",), "EmbedRequest", "string")
            model, label = self._require_model(data.get("model"))
            texts = _embed_inputs(data.get("input"))
            keep_alive_s = self.state.keep_alive_or_default(parse_keep_alive(data.get("keep_alive")))
            options = self.state.resolve_options(model, data.get("options"))
            dimensions = data.get("dimensions") or 0
            if isinstance(dimensions, bool) or not isinstance(dimensions, int):
                raise RequestError(
                    400,
                    f"json: cannot unmarshal {json_kind(dimensions)} into Go struct field "
                    "EmbedRequest.dimensions of type int",
                )
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        async def body() -> AsyncIterator[bytes | ErrorItem]:
            counts, load_s, _ = await self.state.embed(model, texts, keep_alive_s, options, admission)
            vectors = [embedding_for(self.state, model, text, dimensions) for text in texts]
            total_s = time.monotonic() - arrived
            result: dict[str, Any] = {"model": label, "embeddings": vectors}
            if texts:
                result.update(total_duration=_ns(total_s), load_duration=_ns(load_s), prompt_eval_count=sum(counts))
            yield go_json(result)

        return DeferredResponse(body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release)

    async def embeddings(self, request: Request) -> Response:
        """The legacy /api/embeddings: one prompt, one vector."""
        try:
            data = await read_json_body(request, "api.EmbeddingRequest")
            model, _ = self._require_model(data.get("model"))
            prompt = data.get("prompt") or ""
            keep_alive_s = self.state.keep_alive_or_default(parse_keep_alive(data.get("keep_alive")))
            options = self.state.resolve_options(model, data.get("options"))
            admission = self.state.admit()
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        async def body() -> AsyncIterator[bytes | ErrorItem]:
            texts = [prompt] if prompt else []
            await self.state.embed(model, texts, keep_alive_s, options, admission)
            vector = embedding_for(self.state, model, prompt, 0) if prompt else []
            yield go_json({"embedding": vector})

        return DeferredResponse(body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release)

    # ---- model management -----------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.CreateRequest")
            for key in ("model", "name", "from", "system", "template", "quantize"):
                expect_type(data, key, ("string",), "CreateRequest", "string")
            expect_type(data, "parameters", ("object",), "CreateRequest", "map[string]interface {}")
            expect_type(data, "messages", ("array",), "CreateRequest", "[]api.Message")
            license_texts = _license_list(data.get("license"))
            name = data.get("model") or data.get("name") or ""
            if not is_valid_name(name):
                raise RequestError(400, "invalid model name")
            base_name = data.get("from") or ""
            if not base_name and data.get("files"):
                raise RequestError(400, "creating models from files is not supported by the claw simulator")
            if not base_name:
                raise RequestError(400, "neither 'from' or 'files' was specified")
            quantize = _quantize_level(data.get("quantize"))
            base = self.state.find_model(base_name)
            pull_spec = None
            if base is None:
                pull_spec = self.state.pullable.get(canonical_name(base_name))
            source = base or (InstalledModel.from_spec(pull_spec) if pull_spec else None)
            if quantize and source is not None and source.quantization_level not in ("F16", "F32"):
                raise RequestError(400, "quantization is only supported for F16 and F32 models")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)

        async def statuses() -> AsyncIterator[dict[str, Any] | ErrorItem]:
            if source is None:
                yield {"status": "pulling manifest"}
                await self._pause(0.05)
                yield ollama_error_item(500, "pull model manifest: file does not exist")
                return
            if base is None:
                async for line in self._pull_lines(source, include_success=False):
                    yield line
                self.state.models[source.name] = source
            new = source.derive(canonical_name(name), now_rfc3339())
            new.parent_model = source.name
            _apply_create_fields(new, data, license_texts)
            if quantize:
                yield {
                    "status": f"quantizing {source.quantization_level} model to {quantize}",
                    "digest": "0",
                    "total": source.spec.size_bytes,
                    "completed": 0,
                }
                await self._pause(0.2)
                yield {
                    "status": f"quantizing {source.quantization_level} model to {quantize}",
                    "digest": "0",
                    "total": source.spec.size_bytes,
                    "completed": source.spec.size_bytes,
                }
                new.quantization_level = quantize
                yield {"status": "verifying conversion"}
            existing = {digest for _, digest in source.layer_digests()}
            for _, digest in new.layer_digests():
                verb = "using existing" if digest in existing else "creating new"
                yield {"status": f"{verb} layer sha256:{digest}"}
                await self._pause(0.01)
            yield {"status": "writing manifest"}
            self.state.invalidate(new.name)
            self.state.models[new.name] = new
            yield {"status": "success"}

        return self._status_response(statuses(), _stream_flag(data))

    async def pull(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.PullRequest")
            expect_type(data, "model", ("string",), "PullRequest", "string")
            name = data.get("model") or data.get("name") or ""
            if not is_valid_name(name):
                raise RequestError(400, "invalid model name")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        spec = self.state.pullable.get(canonical_name(name))

        async def statuses() -> AsyncIterator[dict[str, Any] | ErrorItem]:
            if spec is None:
                yield {"status": "pulling manifest"}
                await self._pause(0.05)
                yield ollama_error_item(500, "pull model manifest: file does not exist")
                return
            fresh = InstalledModel.from_spec(spec)
            have = self.state.models.get(spec.name)
            async for line in self._pull_lines(fresh, include_success=False, cached=have is not None):
                yield line
            if have is None or have.digest != fresh.digest:
                self.state.invalidate(spec.name)
                self.state.models[spec.name] = fresh
            yield {"status": "success"}

        return self._status_response(statuses(), _stream_flag(data))

    async def delete(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.DeleteRequest")
            expect_type(data, "model", ("string",), "DeleteRequest", "string")
            name = data.get("model") or data.get("name") or ""
            if not name:
                raise RequestError(400, f'name "{name}" is invalid')
            model = self.state.find_model(name)
            if model is None:
                raise RequestError(404, f"model '{name}' not found")
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        del self.state.models[model.name]
        self.state.invalidate(model.name)
        return Response(status_code=200)

    async def copy(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "api.CopyRequest")
            expect_type(data, "source", ("string",), "CopyRequest", "string")
            expect_type(data, "destination", ("string",), "CopyRequest", "string")
            source_name = data.get("source") or ""
            destination = data.get("destination") or ""
            if not is_valid_name(source_name):
                raise RequestError(400, f'source "{source_name}" is invalid')
            if not is_valid_name(destination):
                raise RequestError(400, f'destination "{destination}" is invalid')
            source = self.state.find_model(source_name)
            if source is None:
                raise RequestError(404, f'model "{source_name}" not found')
        except RequestError as exc:
            return ollama_error(exc.status, exc.message)
        copy = source.derive(canonical_name(destination), now_rfc3339())
        self.state.invalidate(copy.name)
        self.state.models[copy.name] = copy
        return Response(status_code=200)

    # ---- helpers --------------------------------------------------------------------------------------------

    def _require_model(self, name: Any) -> tuple[InstalledModel, str]:
        if not name:
            raise RequestError(400, "model is required")
        model = self.state.find_model(name)
        if model is None:
            raise RequestError(404, f"model '{name}' not found")
        return model, name

    def _json(self, body: dict[str, Any], status: int = 200) -> Response:
        return Response(go_json(body), status_code=status, media_type=JSON_MEDIA)

    async def _pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.state.speed)

    async def _pull_lines(
        self, model: InstalledModel, *, include_success: bool, cached: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        await self._pause(0.05)
        layers = [
            (digest, model.spec.size_bytes if kind == "model" else 400 + len(kind) * 97)
            for kind, digest in model.layer_digests()
        ]
        for digest, total in layers:
            steps = 1 if cached or total < MIB else 4
            for step in range(1, steps + 1):
                yield {
                    "status": f"pulling {digest[:12]}",
                    "digest": f"sha256:{digest}",
                    "total": total,
                    "completed": total * step // steps,
                }
                await self._pause(0.02 if cached else 0.3 * total / GIB / steps + 0.01)
        for status in ("verifying sha256 digest", "writing manifest", "removing unused layers"):
            yield {"status": status}
            await self._pause(0.01)
        if include_success:
            yield {"status": "success"}

    def _status_response(self, statuses: AsyncIterator[dict[str, Any] | ErrorItem], stream: bool) -> Response:
        async def lines() -> AsyncIterator[bytes | ErrorItem]:
            async for status in statuses:
                yield status if isinstance(status, ErrorItem) else go_json(status) + b"\n"

        async def last_only() -> AsyncIterator[bytes | ErrorItem]:
            latest: dict[str, Any] = {}
            async for status in statuses:
                if isinstance(status, ErrorItem):
                    yield status
                    return
                latest = status
            yield go_json(latest)

        if stream:
            return DeferredResponse(lines(), media_type=NDJSON, streaming=True)
        return DeferredResponse(last_only(), media_type=JSON_MEDIA, streaming=False)

    def _load_only_response(
        self,
        model: InstalledModel,
        options: dict[str, Any],
        keep_alive_s: float,
        admission: Admission,
        reply: dict[str, Any],
    ) -> Response:
        async def body() -> AsyncIterator[bytes | ErrorItem]:
            await self.state.load_only(model, options, keep_alive_s, admission)
            yield go_json(
                {
                    "model": reply["model"],
                    "created_at": now_rfc3339(),
                    **{k: v for k, v in reply.items() if k != "model"},
                }
            )

        return DeferredResponse(body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release)

    def _generation_response(self, req: GenRequest, admission: Admission, stream: bool, *, chat: bool) -> Response:
        plan = self.state.faults.take_stream_plan()
        events = self.state.generate(req, admission, plan)
        label = req.model_label
        if stream:
            items = _ollama_stream(events, label, chat)
            return DeferredResponse(items, media_type=NDJSON, streaming=True, on_close=admission.release)
        return DeferredResponse(
            _ollama_single(events, label, chat), media_type=JSON_MEDIA, streaming=False, on_close=admission.release
        )


def embedding_for(state: SimState, model: InstalledModel, text: str, dimensions: int) -> list[float]:
    vector = embedding_vector(text, model.spec.embedding_length, model=model.spec.name, seed=state.seed)
    if 0 < dimensions < len(vector):
        vector = normalize(vector[:dimensions])
    return [float(f"{v:.8g}") for v in vector]  # float32 precision, as Ollama sends them


def _ollama_chunk(label: str, chat: bool, kind: str, token: str) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": label, "created_at": now_rfc3339()}
    if chat:
        message = {"role": "assistant", "content": token if kind == "content" else ""}
        if kind == "thinking":
            message["thinking"] = token
        chunk["message"] = message
    else:
        chunk["response"] = token if kind == "content" else ""
        if kind == "thinking":
            chunk["thinking"] = token
    chunk["done"] = False
    return chunk


def _ollama_final(label: str, chat: bool, final: Final, content: str = "", thinking: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"model": label, "created_at": now_rfc3339()}
    if chat:
        message = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        body["message"] = message
        body["done_reason"] = final.done_reason
        body["done"] = True
    else:
        body["response"] = content
        if thinking:
            body["thinking"] = thinking
        body["done"] = True
        body["done_reason"] = final.done_reason
    body.update(final.ollama_metrics())
    return body


async def _ollama_stream(
    events: AsyncIterator[tuple[str, Any]], label: str, chat: bool
) -> AsyncIterator[bytes | ErrorItem]:
    try:
        async for kind, value in events:
            if kind == "done":
                yield go_json(_ollama_final(label, chat, value)) + b"\n"
            elif kind == "error":
                yield ollama_error_item(500, value)
                return
            else:
                yield go_json(_ollama_chunk(label, chat, kind, value)) + b"\n"
    finally:
        await events.aclose()


async def _ollama_single(
    events: AsyncIterator[tuple[str, Any]], label: str, chat: bool
) -> AsyncIterator[bytes | ErrorItem]:
    content: list[str] = []
    thinking: list[str] = []
    try:
        async for kind, value in events:
            if kind == "content":
                content.append(value)
            elif kind == "thinking":
                thinking.append(value)
            elif kind == "error":
                yield ollama_error_item(500, value)
                return
            elif kind == "done":
                yield go_json(_ollama_final(label, chat, value, "".join(content), "".join(thinking)))
    finally:
        await events.aclose()


def _check_generate_fields(data: dict[str, Any], struct_name: str, *, chat: bool) -> None:
    expect_type(data, "model", ("string",), struct_name, "string")
    expect_type(data, "stream", ("bool",), struct_name, "bool")
    expect_type(data, "options", ("object",), struct_name, "map[string]interface {}")
    if chat:
        expect_type(data, "messages", ("array",), struct_name, "[]api.Message")
        expect_type(data, "tools", ("array",), struct_name, "api.Tools")
        for message in data.get("messages") or []:
            if not isinstance(message, dict):
                raise RequestError(
                    400,
                    f"json: cannot unmarshal {json_kind(message)} into Go struct field "
                    f"{struct_name}.messages of type api.Message",
                )
            for key in ("role", "content", "thinking"):
                expect_type(message, key, ("string",), f"{struct_name}.messages", "string")
    else:
        for key in ("prompt", "system", "template", "suffix"):
            expect_type(data, key, ("string",), struct_name, "string")
        expect_type(data, "raw", ("bool",), struct_name, "bool")
    think = data.get("think")
    if think is not None and not isinstance(think, bool) and think not in ("low", "medium", "high"):
        raise RequestError(
            400, f'invalid think value: {json.dumps(think)} (must be "high", "medium", "low", true, or false)'
        )


def _resolve_think(think: Any, model: InstalledModel, label: str) -> bool | str:
    if "thinking" in model.capabilities:
        return True if think is None else think
    if think:
        raise RequestError(400, f'"{label}" does not support thinking')
    return False


def _stream_flag(data: dict[str, Any]) -> bool:
    stream = data.get("stream")
    return True if stream is None else bool(stream)


def _format_of(data: dict[str, Any]) -> Any:
    fmt = data.get("format")
    if fmt == "json" or isinstance(fmt, dict):
        return fmt
    return None


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message)
    return _content_text(messages[-1]) if messages else ""


def _conversation_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', '')}: {_content_text(m)}" for m in messages)


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _embed_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RequestError(400, "invalid input type")


def _license_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise RequestError(400, "license must be a string or an array of strings")


def _quantize_level(value: Any) -> str | None:
    if not value:
        return None
    levels = {"q4_k_m": "Q4_K_M", "q4_k_s": "Q4_K_S", "q8_0": "Q8_0"}
    level = levels.get(str(value).lower())
    if level is None:
        raise RequestError(400, f"unsupported quantization type {value}")
    return level


def _apply_create_fields(model: InstalledModel, data: dict[str, Any], license_texts: list[str]) -> None:
    """Parameters merge over the base's (new keys win, stored unvalidated); the rest replaces when given."""
    parameters = data.get("parameters")
    if isinstance(parameters, dict):
        model.parameters.update({k: v for k, v in parameters.items() if v is not None})
    if data.get("system"):
        model.system = data["system"]
    if data.get("template"):
        model.template = data["template"]
    if license_texts:
        model.license = license_texts
    messages = data.get("messages")
    if isinstance(messages, list) and messages:
        model.messages = [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in messages
            if isinstance(m, dict)
        ]


def _tensor_summary(model: InstalledModel) -> list[dict[str, Any]]:
    spec = model.spec
    return [
        {"name": "token_embd.weight", "type": model.quantization_level, "shape": [spec.embedding_length, 151936]},
        {
            "name": "blk.0.attn_q.weight",
            "type": model.quantization_level,
            "shape": [spec.embedding_length, spec.head_count * spec.head_dim],
        },
        {"name": "output_norm.weight", "type": "F32", "shape": [spec.embedding_length]},
    ]


# ================================================================================================================
# OpenAI-compatible surface
# ================================================================================================================


class OpenAIApi:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def models(self, request: Request) -> Response:
        models = sorted(self.state.models.values(), key=lambda m: rfc3339_to_unix(m.modified_at), reverse=True)
        data = [self._model_entry(m) for m in models]
        return Response(go_json({"object": "list", "data": data}), media_type=JSON_MEDIA)

    async def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        model = self.state.find_model(name)
        if model is None:
            return openai_error(404, f"model '{name}' not found")
        return Response(go_json(self._model_entry(model)), media_type=JSON_MEDIA)

    async def chat_completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "openai.ChatCompletionRequest")
            self._check_fields(data, "ChatCompletionRequest")
            expect_type(data, "messages", ("array",), "ChatCompletionRequest", "[]openai.Message")
            model, label = self._require_model(data.get("model"))
            messages = data.get("messages") or []
            if not messages:
                raise RequestError(400, "[] is too short - 'messages'")
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support chat')
            think = _resolve_think(_openai_think(data), model, label)
            options = self.state.resolve_options(model, self._options(data))
            admission = self.state.admit()
        except RequestError as exc:
            return openai_error(exc.status, exc.message)
        conversation = list(model.messages) + [m for m in messages if isinstance(m, dict)]
        if conversation and conversation[0].get("role") != "system" and model.system:
            conversation.insert(0, {"role": "system", "content": model.system})
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=_last_user_text(conversation),
            context=_conversation_text(conversation),
            prompt_tokens=count_chat_tokens(conversation),
            options=options,
            keep_alive_s=self.state.keep_alive_or_default(None),
            think=think,
            response_format=_openai_format(data.get("response_format")),
            arrived=arrived,
        )
        return self._completion_response(req, admission, data, chat=True)

    async def completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            data = await read_json_body(request, "openai.CompletionRequest")
            self._check_fields(data, "CompletionRequest")
            model, label = self._require_model(data.get("model"))
            prompt = data.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise RequestError(400, "invalid type for 'prompt' field")
            if "completion" not in model.capabilities:
                raise RequestError(400, f'"{label}" does not support generate')
            options = self.state.resolve_options(model, self._options(data))
            admission = self.state.admit()
        except RequestError as exc:
            return openai_error(exc.status, exc.message)
        req = GenRequest(
            model=model,
            model_label=label,
            prompt=prompt,
            context=data.get("suffix") or "",
            prompt_tokens=count_tokens(prompt),
            options=options,
            keep_alive_s=self.state.keep_alive_or_default(None),
            think=False,
            arrived=arrived,
        )
        return self._completion_response(req, admission, data, chat=False)

    async def embeddings(self, request: Request) -> Response:
        try:
            data = await read_json_body(request, "openai.EmbedRequest")
            expect_type(data, "model", ("string",), "EmbedRequest", "string")
            model, label = self._require_model(data.get("model"))
            raw_input = data.get("input")
            if raw_input is None or raw_input == "" or raw_input == []:
                raise RequestError(400, "invalid input")
            texts = _embed_inputs(raw_input)
            encoding = data.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise RequestError(400, f"invalid encoding format: {encoding}")
            dimensions = data.get("dimensions") or 0
            options = self.state.resolve_options(model, None)
            admission = self.state.admit()
        except RequestError as exc:
            return openai_error(exc.status, exc.message)

        async def body() -> AsyncIterator[bytes | ErrorItem]:
            counts, _, _ = await self.state.embed(
                model, texts, self.state.keep_alive_or_default(None), options, admission
            )
            data_items = []
            for i, text in enumerate(texts):
                vector = embedding_for(self.state, model, text, int(dimensions) if isinstance(dimensions, int) else 0)
                embedding: Any = vector
                if encoding == "base64":
                    embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                data_items.append({"object": "embedding", "embedding": embedding, "index": i})
            tokens = sum(counts)
            yield go_json(
                {
                    "object": "list",
                    "data": data_items,
                    "model": label,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        return DeferredResponse(
            body(), media_type=JSON_MEDIA, streaming=False, on_close=admission.release, error_item=openai_error_item
        )

    # ---- helpers --------------------------------------------------------------------------------------------

    def _model_entry(self, model: InstalledModel) -> dict[str, Any]:
        owner = model.name.split("/")[0] if "/" in model.name else "library"
        return {"id": model.name, "object": "model", "created": rfc3339_to_unix(model.modified_at), "owned_by": owner}

    def _require_model(self, name: Any) -> tuple[InstalledModel, str]:
        if not name:
            raise RequestError(400, "model is required")
        model = self.state.find_model(name)
        if model is None:
            raise RequestError(404, f"model '{name}' not found")
        return model, name

    def _check_fields(self, data: dict[str, Any], struct_name: str) -> None:
        expect_type(data, "model", ("string",), struct_name, "string")
        expect_type(data, "stream", ("bool",), struct_name, "bool")
        expect_type(data, "stream_options", ("object",), struct_name, "openai.StreamOptions")
        for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
            expect_type(data, key, ("number",), struct_name, "float64")
        for key in ("max_tokens", "max_completion_tokens", "seed"):
            expect_type(data, key, ("number",), struct_name, "int")
        stop = data.get("stop")
        if stop is not None and not isinstance(stop, (str, list)):
            raise RequestError(
                400,
                f"json: cannot unmarshal {json_kind(stop)} into Go struct field {struct_name}.stop of type []string",
            )

    def _options(self, data: dict[str, Any]) -> dict[str, Any]:
        """OpenAI fields → Ollama options; temperature and top_p default to 1.0 as Ollama forces them."""
        options: dict[str, Any] = {"temperature": data.get("temperature", 1.0), "top_p": data.get("top_p", 1.0)}
        if options["temperature"] is None:
            options["temperature"] = 1.0
        if options["top_p"] is None:
            options["top_p"] = 1.0
        max_tokens = data.get("max_completion_tokens") or data.get("max_tokens")
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        for key in ("seed", "frequency_penalty", "presence_penalty"):
            if data.get(key) is not None:
                options[key] = data[key]
        stop = data.get("stop")
        if isinstance(stop, str):
            options["stop"] = [stop]
        elif isinstance(stop, list):
            options["stop"] = stop
        return options

    def _completion_response(
        self, req: GenRequest, admission: Admission, data: dict[str, Any], *, chat: bool
    ) -> Response:
        plan = self.state.faults.take_stream_plan()
        events = self.state.generate(req, admission, plan)
        prefix = "chatcmpl" if chat else "cmpl"
        completion_id = f"{prefix}-{self.state.next_id()}"
        created = int(time.time())
        if data.get("stream"):
            options = data.get("stream_options") or {}
            include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
            items = _openai_stream(events, req.model_label, completion_id, created, chat, include_usage)
            return DeferredResponse(items, media_type=SSE_MEDIA, streaming=True, on_close=admission.release)
        items = _openai_single(events, req.model_label, completion_id, created, chat)
        return DeferredResponse(items, media_type=JSON_MEDIA, streaming=False, on_close=admission.release)


def _openai_think(data: dict[str, Any]) -> Any:
    effort = data.get("reasoning_effort")
    reasoning = data.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    if effort is None:
        return None
    if effort == "none":
        return False
    if effort in ("low", "medium", "high"):
        return effort
    raise RequestError(400, f'invalid reasoning value: \'{effort}\' (must be "high", "medium", "low", or "none")')


def _openai_format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else "json"
    return None


def _usage(final: Final) -> dict[str, int]:
    return {
        "prompt_tokens": final.prompt_tokens,
        "completion_tokens": final.eval_count,
        "total_tokens": final.prompt_tokens + final.eval_count,
    }


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + go_json(obj) + b"\n\n"


async def _openai_stream(
    events: AsyncIterator[tuple[str, Any]],
    label: str,
    completion_id: str,
    created: int,
    chat: bool,
    include_usage: bool,
) -> AsyncIterator[bytes | ErrorItem]:
    kind_name = "chat.completion.chunk" if chat else "text_completion"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return _sse(
            {
                "id": completion_id,
                "object": kind_name,
                "created": created,
                "model": label,
                "system_fingerprint": "fp_ollama",
                "choices": choices,
                **extra,
            }
        )

    first = True
    try:
        async for kind, value in events:
            if kind == "error":
                yield openai_error_item(500, value)
                return
            if kind == "done":
                if chat:
                    yield chunk([{"index": 0, "delta": {}, "finish_reason": value.done_reason}])
                else:
                    yield chunk([{"text": "", "index": 0, "finish_reason": value.done_reason}])
                if include_usage:
                    yield chunk([], usage=_usage(value))
                yield b"data: [DONE]\n\n"
                return
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
                if kind == "thinking":
                    delta["reasoning"] = value
                else:
                    delta["content"] = value
                first = False
                yield chunk([{"index": 0, "delta": delta, "finish_reason": None}])
            elif kind == "content":
                yield chunk([{"text": value, "index": 0, "finish_reason": None}])
    finally:
        await events.aclose()


async def _openai_single(
    events: AsyncIterator[tuple[str, Any]], label: str, completion_id: str, created: int, chat: bool
) -> AsyncIterator[bytes | ErrorItem]:
    content: list[str] = []
    thinking: list[str] = []
    try:
        async for kind, value in events:
            if kind == "content":
                content.append(value)
            elif kind == "thinking":
                thinking.append(value)
            elif kind == "error":
                yield openai_error_item(500, value)
                return
            elif kind == "done":
                if chat:
                    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
                    if thinking:
                        message["reasoning"] = "".join(thinking)
                    choice = {"index": 0, "message": message, "finish_reason": value.done_reason}
                    kind_name = "chat.completion"
                else:
                    choice = {"text": "".join(content), "index": 0, "finish_reason": value.done_reason}
                    kind_name = "text_completion"
                yield go_json(
                    {
                        "id": completion_id,
                        "object": kind_name,
                        "created": created,
                        "model": label,
                        "system_fingerprint": "fp_ollama",
                        "choices": [choice],
                        "usage": _usage(value),
                    }
                )
    finally:
        await events.aclose()


# ================================================================================================================
# The app
# ================================================================================================================


class _FrontDoor:
    """Pure ASGI middleware: Ollama's Host check on loopback, and the `fail_next` fault hook."""

    def __init__(self, app, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.state.check_host and not self.state.openai_only and not _host_allowed(scope):
            await _send_plain(send, 403, b"", JSON_MEDIA)
            return
        failure = self.state.faults.take_failure(path)
        if failure is not None:
            status, message = failure
            message = message or default_failure_message(status)
            body = openai_error_body(status, message) if path.startswith("/v1/") else go_json({"error": message})
            await _send_plain(send, status, body, JSON_MEDIA)
            return
        await self.app(scope, receive, send)


async def _send_plain(send, status: int, body: bytes, media_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _host_allowed(scope) -> bool:
    """Ollama, bound to loopback, answers 403 unless Host names a local host."""
    host = ""
    for key, value in scope.get("headers", []):
        if key == b"host":
            host = value.decode("latin-1").strip().lower()
            break
    if host.startswith("["):
        host = host[1:].split("]")[0]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host in ("", "localhost", "testserver") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == socket.gethostname().lower()
    return address.is_loopback or address.is_private or address.is_unspecified


def build_app(state: SimState) -> Starlette:
    openai = OpenAIApi(state)
    routes = [
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/v1/completions", openai.completions, methods=["POST"]),
        Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
        Route("/v1/models", openai.models, methods=["GET"]),
        Route("/v1/models/{model:path}", openai.model, methods=["GET"]),
    ]
    if state.openai_only:
        routes.append(Route("/health", lambda request: Response(status_code=200), methods=["GET"]))
    else:
        ollama = OllamaApi(state)
        routes += [
            Route("/", ollama.root, methods=["GET", "HEAD"]),
            Route("/api/version", ollama.version, methods=["GET", "HEAD"]),
            Route("/api/tags", ollama.tags, methods=["GET", "HEAD"]),
            Route("/api/ps", ollama.ps, methods=["GET"]),
            Route("/api/show", ollama.show, methods=["POST"]),
            Route("/api/chat", ollama.chat, methods=["POST"]),
            Route("/api/generate", ollama.generate, methods=["POST"]),
            Route("/api/embed", ollama.embed, methods=["POST"]),
            Route("/api/embeddings", ollama.embeddings, methods=["POST"]),
            Route("/api/create", ollama.create, methods=["POST"]),
            Route("/api/pull", ollama.pull, methods=["POST"]),
            Route("/api/delete", ollama.delete, methods=["DELETE"]),
            Route("/api/copy", ollama.copy, methods=["POST"]),
        ]
    app = Starlette(routes=routes, middleware=[Middleware(_FrontDoor, state=state)])
    app.state.sim = state
    return app


def create_sim_app(
    gpus: list[SimGPU],
    *,
    seed: int = 0,
    openai_only: bool = False,
    num_parallel: int = 2,
    max_queue: int = 16,
    speed: float = 1.0,
    keep_alive_default_s: float = 300,
    check_host: bool = False,
) -> Starlette:
    """The simulator as a Starlette app; its `SimState` (fault hooks, observers) is `app.state.sim`.

    `check_host` turns on Ollama's 403 for a non-local Host header; it is off here because an app used in
    process (e.g. through httpx.ASGITransport) has no listening address. `SimServer` sets it when it binds
    a loopback address, as Ollama does.
    """
    state = SimState(
        gpus,
        seed=seed,
        openai_only=openai_only,
        num_parallel=num_parallel,
        max_queue=max_queue,
        speed=speed,
        keep_alive_default_s=keep_alive_default_s,
        check_host=check_host,
    )
    return build_app(state)


class SimServer:
    """The simulator served over HTTP in the running event loop.

        server = SimServer(speed=20)          # one simulated H200 unless gpus=[...] is given
        url = await server.start()            # port 0: a free port
        ...                                   # server.state.fail_next(...), server.gpus[0].snapshot(), ...
        await server.stop()

    Also usable as `async with SimServer(...) as server:`.
    """

    def __init__(
        self,
        gpus: list[SimGPU] | None = None,
        *,
        seed: int = 0,
        openai_only: bool = False,
        num_parallel: int = 2,
        max_queue: int = 16,
        speed: float = 1.0,
        keep_alive_default_s: float = 300,
        max_loaded_models: int | None = None,
        default_num_ctx: int | None = None,
    ) -> None:
        self._gpus = list(gpus) if gpus else [SimGPU(seed=seed)]
        self._state = SimState(
            self._gpus,
            seed=seed,
            openai_only=openai_only,
            num_parallel=num_parallel,
            max_queue=max_queue,
            speed=speed,
            keep_alive_default_s=keep_alive_default_s,
            max_loaded_models=max_loaded_models,
            default_num_ctx=default_num_ctx,
        )
        self._app = build_app(self._state)
        self._server: AppServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server.url

    @property
    def gpus(self) -> list[SimGPU]:
        return self._gpus

    @property
    def state(self) -> SimState:
        return self._state

    @property
    def app(self) -> Starlette:
        return self._app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            return self._server.url
        self._state.closing = False
        self._state.check_host = _is_loopback(host)
        self._server = AppServer(self._app, host, port)
        return await self._server.start()

    async def stop(self) -> None:
        """Stop serving: in-flight generations end, every runner unloads (the GPU goes back to idle)."""
        self._state.close()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
