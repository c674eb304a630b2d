"""Request records and energy attribution.

Each power interval (two consecutive 20 ms samples of one GPU) holds trapezoid energy. The part of the interval
covered by at least one active request is shared among those requests in proportion to their overlap; the rest goes
to the GPU's idle bucket. So Σ request energy + idle energy = total integrated energy, exactly, at all times.

The 20 ms power samples of an H200 follow the work closely (measured: power crosses 300 W 7–39 ms after a prefill
starts and falls back 16–35 ms after the request ends), so a request's attribution window is its [upstream start,
end] shifted by a small `lag_s`. A request's energy is final once the sample watermark passes its window.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from claw_tui.telemetry.types import PowerSample

STATUSES = ("ok", "error", "cancelled", "rejected")
DEFAULT_LAG_S = 0.03


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(slots=True)
class RequestRecord:
    id: str
    model: str
    endpoint: str
    surface: str = "ollama"  # "ollama" | "openai"
    agent: str | None = None
    backend: str | None = None
    gpu: int | None = None
    stream: bool = True
    client: str = ""
    status: str = "active"  # "active" until finished, then one of STATUSES
    http_status: int | None = None
    error: str | None = None
    downgraded_from: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # wall-clock times (seconds since the epoch)
    t_arrival: float = 0.0
    t_queue_exit: float | None = None
    t_upstream_start: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    # the backend's own timings (Ollama reports nanoseconds; kept here in ms)
    server_total_ms: float | None = None
    server_load_ms: float | None = None
    server_prompt_eval_ms: float | None = None
    server_eval_ms: float | None = None
    wake_ms: float | None = None
    # attributed energy
    energy_j: float = 0.0
    prefill_j: float = 0.0
    decode_j: float = 0.0
    energy_final: bool = False

    @property
    def ttft_ms(self) -> float | None:
        if self.t_first_token is None:
            return None
        return (self.t_first_token - self.t_arrival) * 1000

    @property
    def duration_ms(self) -> float | None:
        if self.t_end is None:
            return None
        return (self.t_end - self.t_arrival) * 1000

    @property
    def tokens_per_joule(self) -> float | None:
        if self.energy_j <= 0 or not self.completion_tokens:
            return None
        return self.completion_tokens / self.energy_j

    @property
    def joules_per_token(self) -> float | None:
        if self.energy_j <= 0 or not self.completion_tokens:
            return None
        return self.energy_j / self.completion_tokens

    @property
    def decode_tokens_per_s(self) -> float | None:
        if self.server_eval_ms:
            return self.completion_tokens / (self.server_eval_ms / 1000)
        if self.t_first_token is None or self.t_end is None or self.completion_tokens < 2:
            return None
        span = self.t_end - self.t_first_token
        return (self.completion_tokens - 1) / span if span > 0 else None

    def to_json(self) -> dict:
        def ms(t: float | None) -> float | None:
            return None if t is None else round(t, 3)

        return {
            "id": self.id,
            "agent": self.agent,
            "model": self.model,
            "backend": self.backend,
            "endpoint": self.endpoint,
            "surface": self.surface,
            "stream": self.stream,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "downgraded_from": self.downgraded_from,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": ms(self.ttft_ms),
            "duration_ms": ms(self.duration_ms),
            "decode_tokens_per_s": ms(self.decode_tokens_per_s),
            "energy_j": round(self.energy_j, 6),
            "prefill_j": round(self.prefill_j, 6),
            "decode_j": round(self.decode_j, 6),
            "tokens_per_joule": ms(self.tokens_per_joule),
            "energy_final": self.energy_final,
            "wake_ms": ms(self.wake_ms),
            "times": {
                "arrival": self.t_arrival,
                "queue_exit": self.t_queue_exit,
                "upstream_start": self.t_upstream_start,
                "first_token": self.t_first_token,
                "end": self.t_end,
            },
            "server": {
                "total_ms": ms(self.server_total_ms),
                "load_ms": ms(self.server_load_ms),
                "prompt_eval_ms": ms(self.server_prompt_eval_ms),
                "eval_ms": ms(self.server_eval_ms),
            },
        }


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """What changed in the ledger, as an immutable JSON-ready snapshot.

    kinds: `request.opened`, `request.first_token`, `request.finished` (sent once the record's energy is final).
    """

    kind: str
    data: dict


@dataclass(slots=True)
class GpuEnergy:
    total_j: float = 0.0
    idle_j: float = 0.0
    idle_s: float = 0.0
    active_s: float = 0.0
    first_ts: float | None = None
    last_ts: float | None = None
    last_watts: float | None = None


@dataclass(slots=True)
class _Span:
    record: RequestRecord
    start: float
    end: float | None = None
    first_token: float | None = None


@dataclass
class Ledger:
    """Thread-safe: the gateway (event loop) opens and finishes records, the sampler thread adds power."""

    lag_s: float = DEFAULT_LAG_S
    max_records: int = 10_000
    clock: Callable[[], float] = time.time
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)
    _records: deque = field(init=False)
    _spans: list[_Span] = field(default_factory=list, init=False)
    _gpus: dict[int, GpuEnergy] = field(default_factory=dict, init=False)
    _listeners: list[Callable[[RequestRecord], None]] = field(default_factory=list, init=False)
    _event_listeners: list[Callable[[LedgerEvent], None]] = field(default_factory=list, init=False)
    expected_gpus: set[int] = field(default_factory=set, init=False)
    metering: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self._records = deque(maxlen=self.max_records)

    def set_gpus(self, indexes: Iterable[int]) -> None:
        """The GPUs whose samples will arrive; with none, energy is not metered and records finish at once."""
        with self._lock:
            self.expected_gpus = set(indexes)
            self.metering = bool(self.expected_gpus)

    def add_finalized_listener(self, listener: Callable[[RequestRecord], None]) -> None:
        """Called once per record, when it has finished and its energy is final (the store persists it)."""
        self._listeners.append(listener)

    def add_event_listener(self, listener: Callable[[LedgerEvent], None]) -> None:
        """Called with a snapshot whenever a request opens, sees its first token, or finishes with final energy.

        Listeners run on the thread that made the change (the gateway's loop, or the sampler's thread when energy
        becomes final): they must be quick and hand the event on to their own thread.
        """
        self._event_listeners.append(listener)

    def _emit(self, kind: str, record: RequestRecord) -> None:
        if self._event_listeners:
            event = LedgerEvent(kind, record.to_json())
            for listener in self._event_listeners:
                listener(event)

    # ---- requests ----------------------------------------------------------------------------------------------
    def open_request(self, *, model: str, endpoint: str, **fields) -> RequestRecord:
        record = RequestRecord(id=fields.pop("id", None) or new_request_id(), model=model, endpoint=endpoint, **fields)
        if not record.t_arrival:
            record.t_arrival = self.clock()
        with self._lock:
            self._records.append(record)
        self._emit("request.opened", record)
        return record

    def mark_upstream_start(self, record: RequestRecord, gpu: int | None = None) -> None:
        now = self.clock()
        with self._lock:
            record.t_upstream_start = now
            if record.t_queue_exit is None:
                record.t_queue_exit = now
            record.gpu = gpu
            self._spans.append(_Span(record, start=now + self.lag_s))

    def mark_first_token(self, record: RequestRecord, at: float | None = None) -> None:
        if record.t_first_token is not None:
            return
        now = self.clock() if at is None else at
        with self._lock:
            record.t_first_token = now
            span = self._span_of(record)
            if span is not None:
                span.first_token = now + self.lag_s
        self._emit("request.first_token", record)

    def finish(self, record: RequestRecord, status: str, http_status: int | None = None, error: str | None = None):
        if status not in STATUSES:
            raise ValueError(f"unknown request status {status!r}")
        now = self.clock()
        final_now = False
        with self._lock:
            if record.status != "active":
                return
            record.status = status
            record.http_status = http_status
            record.error = error
            record.t_end = now
            span = self._span_of(record)
            if span is not None and not self.metering:
                self._spans.remove(span)
                span = None
            if span is None:
                record.energy_final = True
                final_now = True
            else:
                span.end = now + self.lag_s
        if final_now:
            self._notify(record)

    def records(self, limit: int | None = None) -> list[RequestRecord]:
        with self._lock:
            items = list(self._records)
        return items if limit is None else items[-limit:]

    def get(self, request_id: str) -> RequestRecord | None:
        with self._lock:
            for record in reversed(self._records):
                if record.id == request_id:
                    return record
        return None

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for r in self._records if r.status == "active")

    def _span_of(self, record: RequestRecord) -> _Span | None:
        for span in reversed(self._spans):
            if span.record is record:
                return span
        return None

    # ---- energy -------------------------------------------------------------------------------------------------
    def add_power(self, gpu_index: int, samples: Iterable[PowerSample]) -> None:
        # The lock is taken per sample, not per batch: the gateway's open/finish calls must never wait for a whole
        # batch (seconds of samples after a stall) to be attributed.
        for sample in samples:
            with self._lock:
                self._add_sample(gpu_index, sample)
        with self._lock:
            finished = self._retire_spans()
        for record in finished:
            self._notify(record)

    def _add_sample(self, gpu_index: int, sample: PowerSample) -> None:
        gpu = self._gpus.get(gpu_index)
        if gpu is None:
            gpu = self._gpus[gpu_index] = GpuEnergy()
        if gpu.last_ts is None:
            gpu.first_ts = gpu.last_ts = sample.ts
            gpu.last_watts = sample.watts
            return
        if sample.ts <= gpu.last_ts:
            return
        self._attribute_interval(gpu_index, gpu, gpu.last_ts, sample.ts, (gpu.last_watts + sample.watts) / 2)
        gpu.last_ts, gpu.last_watts = sample.ts, sample.watts

    def _attribute_interval(self, gpu_index: int, gpu: GpuEnergy, t0: float, t1: float, mean_w: float) -> None:
        dt = t1 - t0
        energy = mean_w * dt
        gpu.total_j += energy
        overlaps: list[tuple[_Span, float, float]] = []  # span, overlap seconds, of which before first token
        cover_start, cover_end = t1, t0
        for span in self._spans:
            if span.record.gpu is not None and span.record.gpu != gpu_index:
                continue
            start = max(span.start, t0)
            end = min(span.end if span.end is not None else t1, t1)
            if end <= start:
                continue
            prefill_end = min(max(span.first_token if span.first_token is not None else end, start), end)
            overlaps.append((span, end - start, prefill_end - start))
            cover_start, cover_end = min(cover_start, start), max(cover_end, end)
        if not overlaps:
            gpu.idle_j += energy
            gpu.idle_s += dt
            return
        # Spans are contiguous per request; the union of overlaps is approximated by their hull within the interval.
        covered = min(cover_end - cover_start, dt)
        active_energy = energy * covered / dt
        gpu.idle_j += energy - active_energy
        gpu.idle_s += dt - covered
        gpu.active_s += covered
        total_overlap = sum(o for _, o, _ in overlaps)
        for span, overlap, prefill in overlaps:
            share = active_energy * overlap / total_overlap
            record = span.record
            record.energy_j += share
            prefill_share = share * prefill / overlap
            record.prefill_j += prefill_share
            record.decode_j += share - prefill_share

    def _covered(self, span: _Span) -> bool:
        """Have the samples of every GPU this span draws from passed its end?"""
        known = self.expected_gpus | set(self._gpus)
        gpu = span.record.gpu
        indexes = {gpu} if gpu is not None and gpu in known else known
        for index in indexes:
            energy = self._gpus.get(index)
            if energy is None or energy.last_ts is None or energy.last_ts < span.end:
                return False
        return bool(indexes)

    def _retire_spans(self) -> list[RequestRecord]:
        done, keep = [], []
        for span in self._spans:
            if span.end is not None and self._covered(span):
                span.record.energy_final = True
                done.append(span.record)
            else:
                keep.append(span)
        self._spans = keep
        return done

    def _notify(self, record: RequestRecord) -> None:
        for listener in self._listeners:
            listener(record)
        self._emit("request.finished", record)

    def finalize_without_power(self) -> None:
        """At shutdown: records still waiting for samples keep the energy they have and are marked final."""
        with self._lock:
            pending = [span.record for span in self._spans if span.end is not None]
            self._spans = [span for span in self._spans if span.end is None]
            for record in pending:
                record.energy_final = True
        for record in pending:
            self._notify(record)

    def energy_by_gpu(self) -> dict[int, GpuEnergy]:
        with self._lock:
            return {
                index: GpuEnergy(**{k: getattr(g, k) for k in GpuEnergy.__slots__}) for index, g in self._gpus.items()
            }

    def totals(self) -> dict:
        """Session energy so far: total, idle and active (= Σ requests) joules, and the time each covered."""
        gpus = self.energy_by_gpu()
        total = sum(g.total_j for g in gpus.values())
        idle = sum(g.idle_j for g in gpus.values())
        return {
            "total_j": total,
            "idle_j": idle,
            "active_j": total - idle,
            "idle_s": sum(g.idle_s for g in gpus.values()),
            "active_s": sum(g.active_s for g in gpus.values()),
        }
