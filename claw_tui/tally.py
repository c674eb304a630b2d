"""The session's request statistics, kept as records finish: totals, percentiles, and the same per model and agent.

The live summary is built from a `SessionTally` fed by the ledger's finalized listener, so it counts every request of
the session (not the newest N the ledger keeps in memory) and costs the same at ten requests as at a million:
percentiles come from `Quantiles` (exact up to 2,048 values, then within 1%). Stored sessions and bench runs fold
their records into a tally too, so every summary has one shape and one rule.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from claw_tui.quantiles import Quantiles
from claw_tui.records import FinishedRequest, RequestRecord
from claw_tui.summary_types import GroupMetrics, ModelRow

MAX_GROUPS = 256  # per-model / per-agent rows kept apart; requests for any further name share the "other" row
OTHER = "other"
RECENT_EVENTS = 100

# The summary's by_model rows as last built, by model: (the group's metrics, the model's costs, the row). A row is
# built again only when its group's metrics object or its costs changed: at hundreds of rows most stay as they were.
ModelRowCache = dict[str, tuple[GroupMetrics, "dict[str, Any] | None", ModelRow]]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return numerator / denominator if denominator > 0 and numerator > 0 else None


def percentiles_json(quantiles: Quantiles) -> dict[str, Any]:
    return {f"p{p}": _round(quantiles.percentile(p)) for p in (50, 95, 99)}


class GroupStats:
    """Counts, tokens, energy and latency/TTFT percentiles of a set of finished requests.

    Its JSON and metrics are kept until the next request arrives: a summary of hundreds of groups rebuilds only those
    that changed (readers treat the JSON as read-only)."""

    __slots__ = (
        "_json",
        "_metrics",
        "completion",
        "decode_j",
        "energy_j",
        "latency",
        "load_j",
        "prefill_j",
        "prompt",
        "statuses",
        "ttft",
    )

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.prompt = self.completion = 0
        self.energy_j = self.prefill_j = self.decode_j = self.load_j = 0.0
        self.latency = Quantiles()
        self.ttft = Quantiles()
        self._json: dict[str, Any] | None = None
        self._metrics: GroupMetrics | None = None

    def add(self, record: FinishedRequest) -> None:
        self._json = self._metrics = None
        self.statuses[record.status] += 1
        self.prompt += record.prompt_tokens
        self.completion += record.completion_tokens
        self.energy_j += record.energy_j
        self.prefill_j += record.prefill_j
        self.decode_j += record.decode_j
        self.load_j += record.load_j
        if record.status == "ok":
            if record.duration_ms is not None:
                self.latency.add(record.duration_ms)
            if record.ttft_ms is not None:
                self.ttft.add(record.ttft_ms)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def to_json(self) -> dict[str, Any]:
        if self._json is None:
            self._json = self._build_json()
        return self._json

    def metrics(self) -> GroupMetrics:
        if self._metrics is None:
            self._metrics = GroupMetrics.from_json(self.to_json())
        return self._metrics

    def _build_json(self) -> dict[str, Any]:
        return {
            "requests": {
                "total": self.total,
                "ok": self.statuses.get("ok", 0),
                "errors": self.statuses.get("error", 0),
                "by_status": dict(sorted(self.statuses.items())),
            },
            "tokens": {"prompt": self.prompt, "completion": self.completion},
            "energy_j": _round(self.energy_j),
            "prefill_j": _round(self.prefill_j),
            "decode_j": _round(self.decode_j),
            "efficiency": {
                "tokens_per_joule": _round(ratio(self.completion, self.energy_j), 4),
                "joules_per_token": _round(ratio(self.energy_j, self.completion), 4),
            },
            "latency_ms": percentiles_json(self.latency),
            "ttft_ms": percentiles_json(self.ttft),
        }


class _Groups:
    """Named groups, at most MAX_GROUPS of them; names beyond that share one `other` group."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupStats] = {}

    def add(self, name: str, record: RequestRecord, *, may_open: bool = True) -> None:
        """`may_open`: whether this record may open a group of its own (else it counts under `other`)."""
        group = self.groups.get(name)
        if group is None:
            if not may_open or len(self.groups) >= MAX_GROUPS:
                name = OTHER
            group = self.groups.setdefault(name, GroupStats())
        group.add(record)


class SessionTally:
    """Thread-safe: the ledger's finalized listener adds records (requests and model operations); readers build
    the summary's sections at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.whole = GroupStats()
        self._models = _Groups()
        self._agents = _Groups()
        self.wakes = Quantiles()
        self._events_by_kind: Counter[str] = Counter()
        self._events_energy_j = 0.0
        self._recent_events: deque[RequestRecord] = deque(maxlen=RECENT_EVENTS)
        self.model_rows: ModelRowCache = {}

    @classmethod
    def of(cls, records: Iterable[RequestRecord]) -> SessionTally:
        tally = cls()
        for record in records:
            tally.add(record)
        return tally

    def add(self, record: RequestRecord) -> None:
        if record.status == "active":
            return
        with self._lock:
            if not record.is_request:
                self._events_by_kind[record.kind] += 1
                self._events_energy_j += record.energy_j
                self._recent_events.append(record)
                return
            self.whole.add(record)
            if record.model:  # a name no backend has (404) gets no row of its own: clients cannot fill the table
                self._models.add(record.model, record, may_open=record.http_status != 404)
            if record.agent:
                self._agents.add(record.agent, record)
            if record.wake_ms is not None:
                self.wakes.add(record.wake_ms)

    def whole_json(self) -> dict[str, Any]:
        with self._lock:
            return self.whole.to_json()

    def whole_metrics(self) -> GroupMetrics:
        with self._lock:
            return self.whole.metrics()

    def groups_json(self, key: str) -> dict[str, dict[str, Any]]:
        """Per model (`key="model"`) or per agent: name → the group's metrics."""
        groups = self._models if key == "model" else self._agents
        with self._lock:
            return {name: stats.to_json() for name, stats in sorted(groups.groups.items())}

    def groups_metrics(self, key: str) -> dict[str, GroupMetrics]:
        """Per model (`key="model"`) or per agent: name → the group's metrics."""
        groups = self._models if key == "model" else self._agents
        with self._lock:
            return {name: stats.metrics() for name, stats in sorted(groups.groups.items())}

    def wake_p95(self) -> float | None:
        with self._lock:
            return self.wakes.percentile(95)

    def model_events_json(self) -> dict[str, Any]:
        """Loads, unloads and warm-ups: counted apart from requests, with the energy they drew (all of it load)."""
        with self._lock:
            return {
                "total": sum(self._events_by_kind.values()),
                "by_kind": dict(sorted(self._events_by_kind.items())),
                "energy_j": _round(self._events_energy_j),
                "recent": [_event_row(e) for e in self._recent_events],
            }

    def to_json(self) -> dict[str, Any]:
        """Every section, as JSON (saved with the session's running totals, so an export after the store pruned
        old rows still counts every request)."""
        return {
            "whole": self.whole_json(),
            "models": self.groups_json("model"),
            "agents": self.groups_json("agent"),
            "wake_p95": self.wake_p95(),
            "model_events": self.model_events_json(),
        }


class SavedTally:
    """A `SessionTally` read back from its JSON (a stored session's running totals)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.model_rows: ModelRowCache = {}

    def whole_json(self) -> dict[str, Any]:
        whole: dict[str, Any] = self._data["whole"]
        return whole

    def groups_json(self, key: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = self._data["models" if key == "model" else "agents"]
        return groups

    def whole_metrics(self) -> GroupMetrics:
        return GroupMetrics.from_json(self.whole_json())

    def groups_metrics(self, key: str) -> dict[str, GroupMetrics]:
        return {name: GroupMetrics.from_json(row) for name, row in self.groups_json(key).items()}

    def wake_p95(self) -> float | None:
        return self._data.get("wake_p95")

    def model_events_json(self) -> dict[str, Any]:
        return self._data.get("model_events") or {"total": 0, "by_kind": {}, "energy_j": 0.0, "recent": []}


def _event_row(event: RequestRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "model": event.model,
        "backend": event.backend,
        "status": event.status,
        "error": event.error,
        "at": event.t_arrival,
        "duration_ms": _round(event.duration_ms),
        "load_ms": _round(event.server_load_ms),
        "energy_j": _round(event.energy_j),
    }
