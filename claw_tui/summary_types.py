"""The efficiency summary's shapes: frozen dataclasses, turned into the export schema's JSON (`claw.summary/1`) only
where the summary leaves claw (HTTP, the export files).

Field names are the JSON keys and fields come in the JSON's order, so a section of plain values turns into JSON by
its fields (`plain`). Sections whose shape belongs to another part of claw and that the summary only passes on (the
session, the GPUs, the alerts, the model events, a bench run's client-side figures) stay JSON objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

SCHEMA = "claw.summary/1"


def plain(section: Any) -> dict[str, Any]:
    """A section of plain values as JSON: its fields in order. (`dataclasses.asdict` deep-copies every value, which
    makes a summary with hundreds of by_model and by_agent rows take twice as long.)"""
    return {f.name: getattr(section, f.name) for f in fields(section)}


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None

    def to_json(self) -> dict[str, Any]:
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99}


@dataclass(frozen=True, slots=True)
class RequestCounts:
    total: int
    ok: int
    errors: int
    by_status: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "ok": self.ok, "errors": self.errors, "by_status": dict(self.by_status)}


@dataclass(frozen=True, slots=True)
class Tokens:
    prompt: int
    completion: int

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completion": self.completion}


@dataclass(frozen=True, slots=True)
class GroupEfficiency:
    """Request energy only (the session-wide `Efficiency` charges idle energy too)."""

    tokens_per_joule: float | None
    joules_per_token: float | None

    def to_json(self) -> dict[str, Any]:
        return {"tokens_per_joule": self.tokens_per_joule, "joules_per_token": self.joules_per_token}


@dataclass(frozen=True, slots=True)
class GroupMetrics:
    """The metrics of a set of requests: the whole session, or one by_model or by_agent row."""

    requests: RequestCounts
    tokens: Tokens
    energy_j: float
    prefill_j: float
    decode_j: float
    efficiency: GroupEfficiency
    latency_ms: Percentiles
    ttft_ms: Percentiles
    # Built once: the tally hands out the same GroupMetrics until its group changes, so a summary of hundreds of
    # by_model rows rebuilds only the rows that moved. Read-only, like all summary JSON.
    _json: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupMetrics:
        """From the JSON the tally keeps (and the store saves)."""
        return cls(
            requests=RequestCounts(**data["requests"]),
            tokens=Tokens(**data["tokens"]),
            energy_j=data["energy_j"],
            prefill_j=data["prefill_j"],
            decode_j=data["decode_j"],
            efficiency=GroupEfficiency(**data["efficiency"]),
            latency_ms=Percentiles(**data["latency_ms"]),
            ttft_ms=Percentiles(**data["ttft_ms"]),
        )

    def to_json(self) -> dict[str, Any]:
        cached = self._json
        if cached is None:
            cached = self._build_json()
            object.__setattr__(self, "_json", cached)  # a cache, not state: frozen stays true to what it shows
        return cached

    def _build_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests.to_json(),
            "tokens": self.tokens.to_json(),
            "energy_j": self.energy_j,
            "prefill_j": self.prefill_j,
            "decode_j": self.decode_j,
            "efficiency": self.efficiency.to_json(),
            "latency_ms": self.latency_ms.to_json(),
            "ttft_ms": self.ttft_ms.to_json(),
        }


@dataclass(frozen=True, slots=True)
class UnloadOption:
    """What unloading a model after `minutes` unused would have saved (None: no idle baseline to tell)."""

    minutes: int
    saved_j: float | None
    reloads: int
    reload_j: float | None
    net_j: float | None


@dataclass(frozen=True, slots=True)
class ModelRow:
    """A by_model row: the model's request metrics, its loads and its parking cost."""

    model: str
    metrics: GroupMetrics
    load_count: int
    load_j: float
    parking_s: float
    parking_j: float | None
    unload_after: tuple[UnloadOption, ...]
    _json: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)  # as in GroupMetrics

    @classmethod
    def of(cls, model: str, metrics: GroupMetrics, costs: dict[str, Any]) -> ModelRow:
        """`costs`: the model's loads and parking as the ledger keeps them (`Ledger.models_json`)."""
        return cls(
            model=model,
            metrics=metrics,
            load_count=costs["load_count"],
            load_j=costs["load_j"],
            parking_s=costs["parking_s"],
            parking_j=costs["parking_j"],
            unload_after=tuple(UnloadOption(**option) for option in costs["unload_after"]),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRow:
        return cls.of(data["model"], GroupMetrics.from_json(data), data)

    def to_json(self) -> dict[str, Any]:
        cached = self._json
        if cached is None:
            cached = self._build_json()
            object.__setattr__(self, "_json", cached)
        return cached

    def _build_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            **self.metrics.to_json(),
            "load_count": self.load_count,
            "load_j": self.load_j,
            "parking_s": self.parking_s,
            "parking_j": self.parking_j,
            "unload_after": [plain(option) for option in self.unload_after],
        }


@dataclass(frozen=True, slots=True)
class AgentRow:
    agent: str
    metrics: GroupMetrics

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentRow:
        return cls(agent=data["agent"], metrics=GroupMetrics.from_json(data))

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, **self.metrics.to_json()}


@dataclass(frozen=True, slots=True)
class Energy:
    """Every joule in one bucket: requests (active_j) + load + unmetered + idle + pending = total."""

    total_j: float | None
    active_j: float | None
    requests_j: float | None
    load_j: float | None
    unmetered_j: float | None
    idle_j: float | None
    pending_j: float | None
    parking_j: float | None
    idle_baseline_w: float | None
    idle_s: float | None
    active_s: float | None
    load_s: float | None
    unmetered_s: float | None
    counter_j: float | None
    integral_j: float | None
    counter_minus_integral_j: float | None
    counter_vs_integral_pct: float | None
    avg_power_w: float | None
    idle_power_w: float | None
    active_power_w: float | None
    power_stddev_w: float | None


@dataclass(frozen=True, slots=True)
class Efficiency:
    """Session-wide figures charge idle energy too; the `active_` ones count request energy only."""

    tokens_per_joule: float | None
    joules_per_token: float | None
    active_tokens_per_joule: float | None
    active_joules_per_token: float | None
    tokens_per_s: float | None


@dataclass(frozen=True, slots=True)
class Governor:
    """The idle downclock governor over the session; `more` keeps any further keys its source gave (the live
    governor adds the idle sums behind the two powers, so that `claw bench` can cut a window out)."""

    enabled: bool | None = False
    mode: str | None = None
    enabled_s: float | None = 0.0
    downclocked_s: float | None = 0.0
    wakes: float | None = 0
    wake_latency_ms_p95: float | None = None
    idle_power_w_downclocked: float | None = None
    idle_power_w_normal: float | None = None
    models_unloaded: float | None = 0
    more: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Governor:
        """Missing keys take the defaults (a session without a governor, one that saved only its events)."""
        known = {f.name for f in fields(cls)} - {"more"}
        return cls(
            **{key: value for key, value in data.items() if key in known},
            more={key: value for key, value in data.items() if key not in known},
        )

    def to_json(self) -> dict[str, Any]:
        data = plain(self)
        more = data.pop("more")
        return {**data, **more}


@dataclass(frozen=True, slots=True)
class Summary:
    session: dict[str, Any]
    gpus: list[dict[str, Any]]
    energy: Energy
    tokens: Tokens
    efficiency: Efficiency
    latency_ms: Percentiles
    ttft_ms: Percentiles
    requests: RequestCounts
    by_model: tuple[ModelRow, ...]
    by_agent: tuple[AgentRow, ...]
    governor: Governor
    alerts: dict[str, Any]
    model_events: dict[str, Any]
    bench: dict[str, Any] | None = None  # `claw bench`'s client-side measurements

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """From the JSON document `to_json` makes."""
        return cls(
            session=data["session"],
            gpus=data["gpus"],
            energy=Energy(**data["energy"]),
            tokens=Tokens(**data["tokens"]),
            efficiency=Efficiency(**data["efficiency"]),
            latency_ms=Percentiles(**data["latency_ms"]),
            ttft_ms=Percentiles(**data["ttft_ms"]),
            requests=RequestCounts(**data["requests"]),
            by_model=tuple(ModelRow.from_json(row) for row in data["by_model"]),
            by_agent=tuple(AgentRow.from_json(row) for row in data["by_agent"]),
            governor=Governor.from_json(data["governor"]),
            alerts=data["alerts"],
            model_events=data["model_events"],
            bench=data.get("bench"),
        )

    def to_json(self) -> dict[str, Any]:
        """The export schema's JSON document (/claw/v1/summary, `claw export`, `claw bench -o`, F7)."""
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "session": self.session,
            "gpus": self.gpus,
            "energy": plain(self.energy),
            "tokens": self.tokens.to_json(),
            "efficiency": plain(self.efficiency),
            "latency_ms": self.latency_ms.to_json(),
            "ttft_ms": self.ttft_ms.to_json(),
            "requests": self.requests.to_json(),
            "by_model": [row.to_json() for row in self.by_model],
            "by_agent": [row.to_json() for row in self.by_agent],
            "governor": self.governor.to_json(),
            "alerts": self.alerts,
            "model_events": self.model_events,
        }
        if self.bench is not None:
            data["bench"] = self.bench
        return data
