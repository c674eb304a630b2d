"""The energy ledger: request records, and every joule the GPUs drew in exactly one bucket.

Each power interval (two consecutive 20 ms samples of one GPU) holds trapezoid energy. It goes to the requests the
backend was really working on in it (see `claw_tui.attribution`: prefill, decode and model-load spans built from
chunk arrival times and the backend's own timings; time waiting in a queue claims nothing), and what nobody
claimed goes to `unmetered` when the GPU was busy anyway (utilisation, or power clearly above its idle level: another
process) or else to `idle`. So, at all times,

    Σ request energy + load + unmetered + idle + pending = total integrated energy

where `pending` is the energy of intervals not yet attributed: a request's claims are known only once it ends (the
backend reports its timings in its last chunk), so intervals after the start of any request still in flight wait.
A record's energy is final once every GPU it draws from has settled past its end.

The 20 ms power samples of an H200 follow the work closely (power crosses 300 W 7–39 ms after a prefill starts and
falls back 16–35 ms after the request ends), so every claim is shifted by a small `lag_s`.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from claw_tui.attribution import Segment, Timings, TokenCurve, claims_for, split_interval
from claw_tui.parking import ParkingTracker, Residency, canonical_model
from claw_tui.records import MODEL_EVENT_KINDS, REQUEST, STATUSES, RequestRecord, new_request_id
from claw_tui.telemetry.types import GpuSnapshot, PowerSample

__all__ = [
    "DEFAULT_LAG_S",
    "STATUSES",
    "EnergyTotals",
    "GpuEnergy",
    "Ledger",
    "LedgerEvent",
    "RequestRecord",
    "new_request_id",
]

DEFAULT_LAG_S = 0.03
MAX_PENDING_S = 900.0  # a request in flight longer than this stops holding back the attribution of older energy
SETTLE_BATCH = 256  # intervals settled per hold of the lock (the gateway's calls never wait for a whole backlog)
UTIL_BUSY_PCT = 10.0  # NVML utilisation at or above this, with no claim in its window: someone else's work
UTIL_WINDOW_S = 1.0  # the period an NVML utilisation reading covers (at most)
UTIL_STALE_S = 5.0  # readings older than this (the source stopped giving them) no longer hold attribution back
# Without a utilisation reading: power this far above the GPU's idle level (or half of it) with no claim near is
# someone else's work. Wide enough that a model's parking (+40-55 W on an H100/H200) never counts as work.
BUSY_MARGIN_W = 100.0
TAIL_GRACE_S = 0.25  # after a claim, power settles: no power-based "busy" verdict this close to one
IDLE_LEVEL_WINDOW = 512
LOAD_COUNT_MIN_J = 1.0  # a load claim holding less than this was bookkeeping or a short wait, not a model load


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """What changed in the ledger, as an immutable JSON-ready snapshot.

    kinds: `request.opened`, `request.first_token`, `request.finished` (sent once the record's energy is final), and
    `model.event` (a load, unload or warm-up, once final).
    """

    kind: str
    data: dict[str, Any]


class EnergyTotals(TypedDict):
    """The session's energy, every joule in one bucket (total = active + load + unmetered + idle + pending), and the
    seconds each bucket covered: the `energy` of /claw/v1/summary, the stats the store saves, /metrics."""

    total_j: float
    active_j: float  # requests' work
    load_j: float
    unmetered_j: float
    idle_j: float
    pending_j: float  # measured, not yet attributed
    active_s: float
    load_s: float
    unmetered_s: float
    idle_s: float


@dataclass(slots=True)
class GpuEnergy:
    total_j: float = 0.0
    requests_j: float = 0.0
    load_j: float = 0.0
    unmetered_j: float = 0.0
    idle_j: float = 0.0
    pending_j: float = 0.0
    active_s: float = 0.0  # seconds covered by requests' work
    load_s: float = 0.0
    unmetered_s: float = 0.0
    idle_s: float = 0.0
    first_ts: float | None = None
    first_watts: float | None = None
    last_ts: float | None = None
    last_watts: float | None = None
    settled_to: float | None = None  # end of the last interval attributed

    def sampled_window(self) -> tuple[float, float, float, float] | None:
        """(first_ts, first_watts, last_ts, last_watts) of the samples integrated so far; None before the first."""
        if self.first_ts is None or self.first_watts is None or self.last_ts is None or self.last_watts is None:
            return None
        return self.first_ts, self.first_watts, self.last_ts, self.last_watts


@dataclass(slots=True, eq=False)
class _Work:
    """A record's claim on GPU time: open until the record ends, then resolved into segments."""

    record: RequestRecord
    gpu: int | None
    start: float  # upstream start, shifted by the lag
    curve: TokenCurve = field(default_factory=TokenCurve)
    segments: list[Segment] | None = None
    end: float = 0.0


Claim = tuple[_Work, Segment]


@dataclass
class Ledger:
    """Thread-safe: the gateway (event loop) opens and finishes records, the sampler thread adds power."""

    lag_s: float = DEFAULT_LAG_S
    max_records: int = 10_000
    clock: Callable[[], float] = time.time
    max_pending_s: float = MAX_PENDING_S
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)
    _records: deque[RequestRecord] = field(init=False)
    _model_events: deque[RequestRecord] = field(init=False)
    _running: int = field(default=0, init=False)  # records opened, not finished: counted, not searched for
    _open: dict[str, _Work] = field(default_factory=dict, init=False)
    _resolved: list[_Work] = field(default_factory=list, init=False)
    _gpus: dict[int, GpuEnergy] = field(default_factory=dict, init=False)
    _pending: dict[int, deque[tuple[float, float, float]]] = field(default_factory=dict, init=False)  # t0, t1, W
    _util: dict[int, deque[tuple[float, float]]] = field(default_factory=dict, init=False)  # ts, utilisation %
    _idle_level: dict[int, deque[float]] = field(default_factory=dict, init=False)
    _last_claim_end: dict[int, float] = field(default_factory=dict, init=False)
    _residency: dict[int, Residency] = field(default_factory=dict, init=False)
    _last_use: dict[tuple[int, str], float] = field(default_factory=dict, init=False)
    _listeners: list[Callable[[RequestRecord], None]] = field(default_factory=list, init=False)
    _event_listeners: list[Callable[[LedgerEvent], None]] = field(default_factory=list, init=False)
    parking: ParkingTracker = field(default_factory=ParkingTracker, init=False)
    expected_gpus: set[int] = field(default_factory=set, init=False)
    metering: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self._records = deque(maxlen=self.max_records)
        self._model_events = deque(maxlen=self.max_records)

    def set_gpus(self, indexes: Iterable[int]) -> None:
        """The GPUs whose samples will arrive; with none, energy is not metered and records finish at once."""
        with self._lock:
            self.expected_gpus = set(indexes)
            self.metering = bool(self.expected_gpus)

    def add_finalized_listener(self, listener: Callable[[RequestRecord], None]) -> None:
        """Called once per record (requests and model operations), when it has finished and its energy is final."""
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
    def open_request(self, *, model: str, endpoint: str, kind: str = REQUEST, **fields: Any) -> RequestRecord:
        """A new record; `kind` other than "request" makes it a model operation (load, unload, warmup)."""
        if kind != REQUEST and kind not in MODEL_EVENT_KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        record_id = fields.pop("id", None) or new_request_id()
        record = RequestRecord(id=record_id, model=model, endpoint=endpoint, kind=kind, **fields)
        if not record.t_arrival:
            record.t_arrival = self.clock()
        with self._lock:
            (self._records if kind == REQUEST else self._model_events).append(record)
            if record.status == "active":
                self._running += 1
        if kind == REQUEST:
            self._emit("request.opened", record)
        return record

    def record_model_event(self, kind: str, model: str, **fields: Any) -> RequestRecord:
        """A model operation done outside the gateway's request path (the governor's unloads): recorded as done."""
        record = self.open_request(model=model, endpoint="", kind=kind, **fields)
        self.finish(record, "ok", 200)
        return record

    def mark_upstream_start(self, record: RequestRecord, gpu: int | None = None, resident: bool | None = None) -> None:
        now = self.clock()
        with self._lock:
            record.t_upstream_start = now
            if record.t_queue_exit is None:
                record.t_queue_exit = now
            record.gpu = gpu
            record.model_resident = resident
            known = gpu is None or not self.expected_gpus or gpu in self.expected_gpus
            self._open[record.id] = _Work(record, gpu if known else None, start=now + self.lag_s)

    def mark_first_token(self, record: RequestRecord, at: float | None = None) -> None:
        if record.t_first_token is not None:
            return
        record.t_first_token = self.clock() if at is None else at
        if record.is_request:
            self._emit("request.first_token", record)

    def progress(self, record: RequestRecord, tokens: int, at: float | None = None) -> None:
        """Chunks relayed so far: `tokens` generated in all (the curve that shares decode energy by tokens)."""
        record.completion_tokens = tokens
        work = self._open.get(record.id)
        if work is not None:
            work.curve.add((self.clock() if at is None else at) + self.lag_s, tokens)

    def finish(
        self, record: RequestRecord, status: str, http_status: int | None = None, error: str | None = None
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown request status {status!r}")
        now = self.clock()
        with self._lock:
            if record.status != "active":
                return
            self._running -= 1
            record.status = status
            record.http_status = http_status
            record.error = error
            record.t_end = now
            work = self._open.pop(record.id, None)
            if work is not None:
                self._resolve(work)
                if self.metering:
                    return
            else:
                record.energy_final = True
        if work is not None:  # telemetry is gone: what was measured is all there will be
            self.finalize_without_power(in_flight_too=False)
            return
        self._notify(record)

    def _resolve(self, work: _Work) -> None:
        record, lag = work.record, self.lag_s
        failed = record.status != "ok" and record.t_first_token is None and not work.curve.times
        timings = Timings(
            start=work.start,
            end=max((record.t_end or work.start) + lag, work.start),
            first_token=None if record.t_first_token is None else record.t_first_token + lag,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            load_s=_seconds(record.server_load_ms),
            prompt_eval_s=_seconds(record.server_prompt_eval_ms),
            eval_s=_seconds(record.server_eval_ms),
            model_resident=record.model_resident,
            failed_before_output=failed,
        )
        segments, record.attribution = claims_for(timings, work.curve)
        if record.model_resident and segments and segments[0].phase == "load":
            segments[0].residual = True  # "resident" may be stale: a real reload takes only unclaimed energy
        work.segments = segments
        work.end = max([timings.end, *(s.t1 for s in segments)])
        if record.model_resident:
            for gpu in self._gpus_of(work):
                model = canonical_model(record.model)
                last = self._last_use.get((gpu, model))
                if last is None and gpu in self._residency:
                    last = self._residency[gpu].since(model)
                self.parking.note_use(gpu, model, None if last is None else work.start - last)
        self._resolved.append(work)

    def records(self, limit: int | None = None) -> list[RequestRecord]:
        """Requests, oldest first (model operations are kept apart: `model_events`)."""
        with self._lock:
            items = list(self._records)
        return items if limit is None else items[-limit:]

    def model_events(self, limit: int | None = None) -> list[RequestRecord]:
        with self._lock:
            items = list(self._model_events)
        return items if limit is None else items[-limit:]

    def get(self, request_id: str) -> RequestRecord | None:
        with self._lock:
            for records in (self._records, self._model_events):
                for record in reversed(records):
                    if record.id == request_id:
                        return record
        return None

    def in_flight(self) -> int:
        """Requests and model operations still running."""
        with self._lock:
            return self._running

    # ---- what the backends have resident, and how busy the GPUs are ------------------------------------------------
    def set_resident(self, gpu: int | None, models: Iterable[str], ts: float | None = None) -> None:
        """The models resident on a GPU (None: on every GPU) from now on (or from `ts`)."""
        at = self.clock() if ts is None else ts
        models = list(models)
        with self._lock:
            for index in [gpu] if gpu is not None else sorted(self.expected_gpus | set(self._gpus) or {0}):
                self._residency.setdefault(index, Residency()).set(at, models)

    def add_utilization(self, snapshots: Iterable[GpuSnapshot]) -> None:
        """1 Hz GPU snapshots (the sampler's snapshot listener): utilisation tells other processes' work."""
        with self._lock:
            for snapshot in snapshots:
                if snapshot.util_pct is not None:
                    self._util.setdefault(snapshot.index, deque(maxlen=600)).append((snapshot.ts, snapshot.util_pct))
        self._settle_and_retire(horizon_cap=None)

    # ---- energy -------------------------------------------------------------------------------------------------
    def add_power(self, gpu_index: int, samples: Iterable[PowerSample]) -> None:
        # The lock is taken per sample, not per batch: the gateway's open/finish calls must never wait for a whole
        # batch (seconds of samples after a stall) to be integrated.
        for sample in samples:
            with self._lock:
                self._add_sample(gpu_index, sample)
        self._settle_and_retire(horizon_cap=None)

    def _add_sample(self, gpu_index: int, sample: PowerSample) -> None:
        gpu = self._gpus.get(gpu_index)
        if gpu is None:
            gpu = self._gpus[gpu_index] = GpuEnergy()
            self._pending[gpu_index] = deque()
        if gpu.last_ts is None or gpu.last_watts is None:
            gpu.first_ts = gpu.last_ts = gpu.settled_to = sample.ts
            gpu.first_watts = gpu.last_watts = sample.watts
            return
        if sample.ts <= gpu.last_ts:
            return
        mean_w = (gpu.last_watts + sample.watts) / 2
        energy = mean_w * (sample.ts - gpu.last_ts)
        gpu.total_j += energy
        gpu.pending_j += energy
        self._pending[gpu_index].append((gpu.last_ts, sample.ts, mean_w))
        gpu.last_ts, gpu.last_watts = sample.ts, sample.watts

    def _settle_and_retire(self, horizon_cap: float | None) -> None:
        """Attribute every interval no open request can still claim, a batch per hold of the lock; then retire."""
        while True:
            with self._lock:
                settled = sum(self._settle(index, SETTLE_BATCH, horizon_cap) for index in list(self._gpus))
            if settled < SETTLE_BATCH:
                break
        with self._lock:
            finished = self._retire()
        for record in finished:
            self._notify(record)

    def _horizon(self, gpu_index: int) -> float:
        starts = [w.start for w in self._open.values() if w.gpu is None or w.gpu == gpu_index]
        horizon = min(starts) if starts else float("inf")
        newest = self._gpus[gpu_index].last_ts
        readings = self._util.get(gpu_index)
        if readings and newest is not None and newest - readings[-1][0] < UTIL_STALE_S:
            horizon = min(horizon, readings[-1][0])  # an interval's verdict (idle or busy) waits for its reading
        if newest is not None and newest - horizon > self.max_pending_s:
            horizon = newest - self.max_pending_s
        return horizon

    def _settle(self, gpu_index: int, budget: int, horizon_cap: float | None) -> int:
        pending = self._pending.get(gpu_index)
        if not pending:
            return 0
        horizon = self._horizon(gpu_index) if horizon_cap is None else horizon_cap
        if pending[0][1] > horizon:
            return 0
        claims = [
            (work, segment)
            for work in self._resolved
            if work.gpu is None or work.gpu == gpu_index
            for segment in work.segments or ()
            if segment.t1 > pending[0][0]
        ]
        gpu = self._gpus[gpu_index]
        count = 0
        while pending and count < budget and pending[0][1] <= horizon:
            t0, t1, watts = pending.popleft()
            self._settle_interval(gpu_index, gpu, t0, t1, watts, claims)
            count += 1
        return count

    def _settle_interval(
        self, index: int, gpu: GpuEnergy, t0: float, t1: float, watts: float, claims: list[Claim]
    ) -> None:
        energy = watts * (t1 - t0)
        gpu.pending_j -= energy
        gpu.settled_to = t1
        split = split_interval(t0, t1, energy, [c for c in claims if c[1].t0 < t1 and c[1].t1 > t0])
        for share in split.shares:
            record = share.owner.record
            if share.phase == "load" or not record.is_request:
                record.load_j += share.joules
                gpu.load_j += share.joules
                if not record.is_request:
                    record.energy_j += share.joules
            else:
                record.energy_j += share.joules
                gpu.requests_j += share.joules
                if share.phase == "prefill":
                    record.prefill_j += share.joules
                else:
                    record.decode_j += share.joules
        if split.shares:
            self._last_claim_end[index] = t1
            if any(s.phase != "load" and s.owner.record.is_request for s in split.shares):
                gpu.active_s += split.claimed_s
            else:
                gpu.load_s += split.claimed_s
        if split.unclaimed_s <= 0:
            return
        if self._busy(index, t0, t1, watts, claims):
            gpu.unmetered_j += split.unclaimed_j
            gpu.unmetered_s += split.unclaimed_s
            return
        gpu.idle_j += split.unclaimed_j
        gpu.idle_s += split.unclaimed_s
        if not split.shares:
            self._idle_interval(index, t0, t1, watts)

    def _busy(self, index: int, t0: float, t1: float, watts: float, claims: list[Claim]) -> bool:
        """Was the GPU working for someone else (not a request through the gateway) in this unclaimed interval?"""
        last_claim = self._last_claim_end.get(index, float("-inf"))
        next_claim = min((s.t0 for _, s in claims if s.t0 >= t1), default=float("inf"))
        next_claim = min([next_claim, *(w.start for w in self._open.values() if w.gpu in (None, index))])
        reading = self._util_after(index, t0, t1)
        if reading is not None:
            ts, util = reading
            return util >= UTIL_BUSY_PCT and last_claim < ts - UTIL_WINDOW_S and next_claim > ts
        level = self._idle_level_w(index)
        if level is None or t0 - last_claim < TAIL_GRACE_S or next_claim - t1 < TAIL_GRACE_S:
            return False
        return watts > level + max(BUSY_MARGIN_W, 0.5 * level)

    def _util_after(self, index: int, t0: float, t1: float) -> tuple[float, float] | None:
        """The utilisation reading whose window covers [t0, t1]: the first one taken at or after t1."""
        readings = self._util.get(index)
        if not readings:
            return None
        while len(readings) > 1 and readings[0][0] < t0 - UTIL_WINDOW_S:
            readings.popleft()
        for ts, util in readings:
            if ts >= t1:
                return (ts, util) if ts - t1 <= UTIL_WINDOW_S else None
        return None

    def _idle_level_w(self, index: int) -> float | None:
        levels = self._idle_level.get(index)
        return statistics.median(levels) if levels and len(levels) >= 25 else None

    def _idle_interval(self, index: int, t0: float, t1: float, watts: float) -> None:
        """Nobody's work and nobody else's: the GPU's idle level, and parking for the models resident."""
        if t0 - self._last_claim_end.get(index, float("-inf")) >= TAIL_GRACE_S:
            self._idle_level.setdefault(index, deque(maxlen=IDLE_LEVEL_WINDOW)).append(watts)
        residency = self._residency.get(index)
        resident = residency.at(t0) if residency is not None else None
        if residency is None or resident is None:
            return
        ages: dict[str, float] = {}
        for model in resident:
            age = self._unused_for(index, model, t0, residency)
            if age is not None:
                ages[model] = age
        self.parking.add_idle(index, t1 - t0, watts, resident, ages)

    def _unused_for(self, index: int, model: str, t: float, residency: Residency) -> float | None:
        """Seconds since the model last worked on this GPU; None while a request for it is in flight."""
        last = self._last_use.get((index, model))
        for work in [*self._resolved, *self._open.values()]:
            if work.gpu not in (None, index) or canonical_model(work.record.model) != model:
                continue
            if work.start <= t and (work.segments is None or work.end > t):
                return None
            if work.segments is not None and work.end <= t:
                last = work.end if last is None else max(last, work.end)
        if last is None:
            last = residency.since(model)
        return None if last is None else max(0.0, t - last)

    def _gpus_of(self, work: _Work) -> list[int]:
        known = self.expected_gpus | set(self._gpus)
        return [work.gpu] if work.gpu is not None and work.gpu in known else sorted(known)

    def _retire(self) -> list[RequestRecord]:
        """Resolved works whose every GPU has settled past their end: their energy is final."""
        done: list[RequestRecord] = []
        keep: list[_Work] = []
        for work in self._resolved:
            gpus = self._gpus_of(work)
            settled = [self._gpus[i].settled_to if i in self._gpus else None for i in gpus]
            if gpus and all(s is not None and s >= work.end for s in settled):
                done.append(self._final(work, gpus))
            else:
                keep.append(work)
        self._resolved = keep
        return done

    def _final(self, work: _Work, gpus: list[int]) -> RequestRecord:
        record = work.record
        record.energy_final = True
        model = canonical_model(record.model)
        if record.kind != "unload" and record.load_j >= LOAD_COUNT_MIN_J:  # an unload's energy is no load
            self.parking.add_load(model, record.load_j)
        if record.status in ("ok", "cancelled"):  # a failed request (an unknown model's 404) did not use the model
            for index in gpus:
                key = (index, model)
                self._last_use[key] = max(self._last_use.get(key, work.end), work.end)
        return record

    def _notify(self, record: RequestRecord) -> None:
        for listener in self._listeners:
            listener(record)
        self._emit("request.finished" if record.is_request else "model.event", record)

    def finalize_without_power(self, *, in_flight_too: bool = True) -> None:
        """No more samples will come (shutdown, telemetry lost): attribute what was measured, make records final.

        With `in_flight_too=False` (telemetry lost while the gateway runs) requests still in flight keep their claim
        on what was measured: the records that share it with them become final when the last of them ends.
        """
        self._settle_and_retire(horizon_cap=float("inf") if in_flight_too else None)
        with self._lock:
            if not in_flight_too and self._open:
                return
            pending = [work.record for work in self._resolved]
            self._resolved = []
            for record in pending:
                record.energy_final = True
        for record in pending:
            self._notify(record)

    def energy_by_gpu(self) -> dict[int, GpuEnergy]:
        with self._lock:
            return {
                index: GpuEnergy(**{k: getattr(g, k) for k in GpuEnergy.__slots__}) for index, g in self._gpus.items()
            }

    def totals(self) -> EnergyTotals:
        """Session energy so far, bucket by bucket (requests = `active_j`), and the seconds each covered."""
        gpus = self.energy_by_gpu().values()
        return EnergyTotals(
            total_j=sum(g.total_j for g in gpus),
            active_j=sum(g.requests_j for g in gpus),
            load_j=sum(g.load_j for g in gpus),
            unmetered_j=sum(g.unmetered_j for g in gpus),
            idle_j=sum(g.idle_j for g in gpus),
            pending_j=sum(g.pending_j for g in gpus),
            active_s=sum(g.active_s for g in gpus),
            load_s=sum(g.load_s for g in gpus),
            unmetered_s=sum(g.unmetered_s for g in gpus),
            idle_s=sum(g.idle_s for g in gpus),
        )

    def models_json(self) -> dict[str, dict[str, Any]]:
        """Per model: loads, parking time and cost, and what unloading after N minutes would have saved."""
        with self._lock:
            return self.parking.models_json()

    def idle_baselines(self) -> dict[int, float]:
        with self._lock:
            return self.parking.baselines()


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000
