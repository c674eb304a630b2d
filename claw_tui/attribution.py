"""Energy attribution by real work: what each request claims of the GPU's time, and how one interval is shared.

A request claims the spans in which the backend really worked for it, built once it has ended from what the
gateway saw and what the backend reported (see `claims_for`):
- `prefill`: Ollama's `prompt_eval_duration` (or llama.cpp's `timings.prompt_ms`) just before the first token;
- `decode`: from the first token to the last, weighted by the tokens that arrived (chunk arrival times);
- `load`: Ollama's `load_duration` from the request's start, when the model was not resident (otherwise that time
  was a wait for the scheduler, and a wait for a free slot appears in no duration at all: waits claim nothing).
Without backend timings, the prefill spreads over [upstream start, first token] ("tokens"); a whole answer with no
timings spreads over its window ("window"); a request that failed before its first token claims only what nobody
else claimed in its window (it may have been waiting, or computing alone).

In each 20 ms power interval the claims share the covered part of the interval in proportion to the tokens each
processed in it (prompt tokens for a prefill, generated tokens for a decode): the best signal available when a
backend batches several sequences. The uncovered part is nobody's: the ledger calls it idle or unmetered.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

PHASES = ("prefill", "decode", "load")
LOAD_DENSITY = 1.0  # a model load moves weights over PCIe: it weighs next to nothing beside real compute
MIN_LOAD_S = 0.05  # Ollama's load_duration holds a few ms of bookkeeping even for a resident model
COALESCE_S = 0.005  # chunk arrivals closer than this are one point of the token curve
MIN_SPAN_S = 1e-6  # shorter spans are too short to weigh anything

Owner = TypeVar("Owner")  # whoever made a claim (the ledger's work item for one request)


@dataclass(slots=True)
class Segment:
    """A span of GPU work for one request: [t0, t1] in one phase, with its weight (tokens processed) per time."""

    t0: float
    t1: float
    phase: str
    density: float = 0.0  # tokens per second, when spread evenly
    times: Sequence[float] | None = None  # a token curve (arrival times, cumulative tokens) for a decode
    counts: Sequence[float] | None = None
    residual: bool = False  # takes only what no other claim took

    def overlap(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.t1) - max(a, self.t0))

    def weight(self, a: float, b: float) -> float:
        a, b = max(a, self.t0), min(b, self.t1)
        if b <= a:
            return 0.0
        if self.times is None or self.counts is None:
            return self.density * (b - a)
        return _curve_at(self.times, self.counts, b) - _curve_at(self.times, self.counts, a)


def _curve_at(times: Sequence[float], counts: Sequence[float], t: float) -> float:
    """Cumulative tokens at t, linear between arrival points."""
    i = bisect_right(times, t)
    if i == 0:
        return counts[0]
    if i >= len(times):
        return counts[-1]
    t0, t1 = times[i - 1], times[i]
    c0, c1 = counts[i - 1], counts[i]
    return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1


@dataclass(slots=True)
class TokenCurve:
    """Arrival times of relayed chunks and the tokens relayed so far, coalesced to a few ms."""

    times: list[float] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)

    def add(self, t: float, tokens: int) -> None:
        if self.times and t - self.times[-1] < COALESCE_S:
            self.counts[-1] = tokens
            return
        self.times.append(t)
        self.counts.append(tokens)

    @property
    def last(self) -> float | None:
        return self.times[-1] if self.times else None


@dataclass(frozen=True, slots=True)
class Timings:
    """What one request's attribution is built from (seconds since the epoch; durations in seconds)."""

    start: float  # upstream start
    end: float
    first_token: float | None
    prompt_tokens: int
    completion_tokens: int
    load_s: float | None = None
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    model_resident: bool | None = None
    failed_before_output: bool = False


def claims_for(t: Timings, curve: TokenCurve) -> tuple[list[Segment], str]:
    """The segments a finished request claims, and how they were placed: "timed", "tokens" or "window"."""
    segments: list[Segment] = []
    load_end = t.start
    if t.load_s and t.load_s >= MIN_LOAD_S and t.model_resident is not True:
        load_end = min(t.start + t.load_s, t.end)
        segments.append(Segment(t.start, load_end, "load", LOAD_DENSITY))
    if t.failed_before_output:
        segments.append(Segment(load_end, t.end, "prefill", 1.0, residual=True))
        return _kept(segments), "window"
    first = t.first_token
    timed = t.prompt_eval_s is not None or t.eval_s is not None
    if first is not None and len(curve.times) > 0:  # streamed
        last = max(curve.last or first, first)
        if t.prompt_eval_s:
            begin = max(first - t.prompt_eval_s, t.start)
            segments.append(Segment(begin, first, "prefill", _density(t.prompt_tokens, first - begin)))
        elif first > load_end:
            segments.append(Segment(load_end, first, "prefill", _density(t.prompt_tokens, first - load_end)))
        if last > first:
            segments.append(Segment(first, last, "decode", times=curve.times, counts=curve.counts))
        return _kept(segments), "timed" if t.prompt_eval_s else "tokens"
    if timed:
        decode_begin = max(t.end - (t.eval_s or 0.0), load_end)
        prefill_begin = max(decode_begin - (t.prompt_eval_s or 0.0), load_end)
        if decode_begin > prefill_begin:
            segments.append(
                Segment(prefill_begin, decode_begin, "prefill", _density(t.prompt_tokens, decode_begin - prefill_begin))
            )
        if t.end > decode_begin:
            segments.append(Segment(decode_begin, t.end, "decode", _density(t.completion_tokens, t.end - decode_begin)))
        return _kept(segments), "timed"
    window_end = max(t.end, load_end)
    if window_end > load_end:
        tokens = t.prompt_tokens + t.completion_tokens
        split = t.first_token if t.first_token and load_end < t.first_token < window_end else None
        if split is None:
            segments.append(Segment(load_end, window_end, "decode", _density(tokens, window_end - load_end)))
        else:
            density = _density(tokens, window_end - load_end)
            segments.append(Segment(load_end, split, "prefill", density))
            segments.append(Segment(split, window_end, "decode", density))
    return _kept(segments), "window"


def _kept(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if s.t1 - s.t0 >= MIN_SPAN_S]


def _density(tokens: int, seconds: float) -> float:
    return max(tokens, 1) / max(seconds, MIN_SPAN_S)


@dataclass(slots=True)
class Share(Generic[Owner]):
    """Energy of one interval given to one claimant, by phase."""

    owner: Owner
    phase: str
    joules: float


@dataclass(slots=True)
class Split(Generic[Owner]):
    shares: list[Share[Owner]]
    claimed_s: float  # seconds of the interval covered by claims
    unclaimed_j: float
    unclaimed_s: float


def split_interval(t0: float, t1: float, joules: float, claims: Iterable[tuple[Owner, Segment]]) -> Split[Owner]:
    """Share one interval's energy among the segments that overlap it (see the module's description)."""
    dt = t1 - t0
    firm: list[tuple[Owner, Segment, float, float]] = []  # owner, segment, overlap, weight
    residual: list[tuple[Owner, Segment, float]] = []
    firm_spans: list[tuple[float, float]] = []
    residual_spans: list[tuple[float, float]] = []
    for owner, segment in claims:
        overlap = segment.overlap(t0, t1)
        if overlap <= 0:
            continue
        span = (max(t0, segment.t0), min(t1, segment.t1))
        if segment.residual:
            residual.append((owner, segment, overlap))
            residual_spans.append(span)
        else:
            firm.append((owner, segment, overlap, segment.weight(t0, t1)))
            firm_spans.append(span)
    shares: list[Share[Owner]] = []
    covered = min(_union(firm_spans), dt)
    firm_j = joules * covered / dt if dt > 0 else 0.0
    if firm:
        total_weight = sum(w for _, _, _, w in firm)
        total_overlap = sum(o for _, _, o, _ in firm)
        for owner, segment, overlap, weight in firm:
            part = weight / total_weight if total_weight > 0 else overlap / total_overlap
            shares.append(Share(owner, segment.phase, firm_j * part))
    residual_s = min(_union(residual_spans), dt - covered) if residual else 0.0
    residual_j = joules * residual_s / dt if dt > 0 else 0.0
    if residual:
        total_overlap = sum(o for _, _, o in residual)
        for owner, segment, overlap in residual:
            shares.append(Share(owner, segment.phase, residual_j * overlap / total_overlap))
    claimed_s = covered + residual_s
    return Split(shares, claimed_s, joules - firm_j - residual_j, dt - claimed_s)


def _union(spans: list[tuple[float, float]]) -> float:
    if not spans:
        return 0.0
    if len(spans) == 1:
        return spans[0][1] - spans[0][0]
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total
