"""What a console knows about the service it shows, built only from loaded state and events.

One writer (the console's own thread applies events in order); panes read it. Request snapshots replace each other
whole: a pane never sees a record that another thread is changing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from claw_tui.console.events import ConsoleEvent
from claw_tui.console.records import RequestView
from claw_tui.console.telemetry_view import TelemetryView

MAX_RECORDS = 10_000
MAX_MODEL_EVENTS = 200
MAX_BATCHES = 100


@dataclass
class ConsoleModel:
    telemetry: TelemetryView = field(default_factory=TelemetryView)
    status: dict[str, Any] = field(default_factory=dict)
    governor: dict[str, Any] = field(default_factory=lambda: {"enabled": False, "state": "off"})
    alerts: list[dict[str, Any]] = field(default_factory=list)
    backends: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    energy: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)
    # the service's CPU and RAM: cpu_pct, cpus, ram_used_mib, ram_total_mib
    host: dict[str, Any] = field(default_factory=dict)
    in_flight: int = 0
    model_events: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)  # batch jobs, newest first, as /v1/batches shows them
    batches_version: int = 0
    version: int = 0  # bumped on every change: panes skip work when nothing changed
    requests_version: int = 0
    _records: OrderedDict[str, RequestView] = field(default_factory=OrderedDict)

    # ---- loading -----------------------------------------------------------------------------------------------
    def load(self, state: dict[str, Any]) -> None:
        """The whole state: {"status", "requests" (newest first), "telemetry", "agents"}."""
        status = state.get("status") or {}
        self.status = status
        self.governor = status.get("governor") or {"enabled": False, "state": "off"}
        self.alerts = list(status.get("alerts") or [])
        self.backends = list(status.get("backends") or [])
        self.notices = list(status.get("notices") or [])
        stats = status.get("stats") or {}
        self.energy = stats.get("energy") or {}
        self.tokens = stats.get("tokens") or {}
        self.host = stats.get("host") or {}
        self.in_flight = int(status.get("in_flight") or 0)
        self.agents = list(state.get("agents") or [])
        self.model_events = list(state.get("model_events") or [])
        self.batches = list(state.get("batches") or [])[:MAX_BATCHES]
        self.batches_version += 1
        self.telemetry = TelemetryView()
        self.telemetry.load(state.get("telemetry") or {})
        if stats:
            self.telemetry.set_stats(stats)
        self._records.clear()
        for data in reversed(state.get("requests") or []):
            self._put(data)
        self._changed(requests=True)

    def _changed(self, requests: bool = False) -> None:
        self.version += 1
        if requests:
            self.requests_version += 1

    # ---- events ------------------------------------------------------------------------------------------------
    def apply(self, event: ConsoleEvent) -> None:
        kind, data = event.kind, event.data
        if kind.startswith("request."):
            self._put(data)
            self._changed(requests=True)
            return
        if kind == "telemetry":
            self.telemetry.add(data)
        elif kind == "telemetry.stats":
            self.telemetry.set_stats(data)
            self.energy = data.get("energy") or self.energy
            self.tokens = data.get("tokens") or self.tokens
            self.host = data.get("host") or self.host
            self.in_flight = int(data.get("in_flight") or 0)
        elif kind == "telemetry.gpus":
            self.telemetry.set_gpus(data)
        elif kind == "governor":
            self.governor = data
        elif kind == "alerts":
            self.alerts = list(data.get("alerts") or [])
        elif kind == "backends":
            self.backends = list(data.get("backends") or [])
        elif kind == "agents":
            self.agents = list(data.get("agents") or [])
        elif kind == "model.event":
            self.model_events = [*self.model_events, data][-MAX_MODEL_EVENTS:]
        elif kind.startswith("batch."):
            if not self._put_batch(kind, data):
                return
        else:
            return
        self._changed()

    def _put(self, data: dict[str, Any]) -> None:
        view = RequestView.from_json(data)
        if not view.id:
            return
        old = self._records.get(view.id)
        if old is not None and _progress(old) > _progress(view):
            return  # an older snapshot that was queued before the state was loaded
        self._records[view.id] = view
        while len(self._records) > MAX_RECORDS:
            self._records.popitem(last=False)

    def _put_batch(self, kind: str, data: dict[str, Any]) -> bool:
        """A batch job's new state (`batch.*` events carry the whole batch object; `batch.webhook` its delivery)."""
        batch_id = data.get("id")
        if not batch_id:
            return False
        if kind == "batch.webhook":
            for job in self.batches:
                if job.get("id") == batch_id:
                    job["claw"] = {**(job.get("claw") or {}), "webhook": data.get("webhook")}
        else:
            others = [job for job in self.batches if job.get("id") != batch_id]
            self.batches = sorted([data, *others], key=lambda j: j.get("created_at") or 0, reverse=True)[:MAX_BATCHES]
        self.batches_version += 1
        return True

    # ---- reading -----------------------------------------------------------------------------------------------
    def records(self, limit: int | None = None) -> list[RequestView]:
        """Oldest first (arrival order), like the ledger."""
        items = list(self._records.values())
        return items if limit is None else items[-limit:]

    def record(self, request_id: str) -> RequestView | None:
        return self._records.get(request_id)

    def alerts_for(self, gpu: int | None) -> list[dict[str, Any]]:
        return [a for a in self.alerts if gpu is None or a.get("gpu") in (None, gpu)]

    @property
    def metering(self) -> bool:
        return self.telemetry.state == "ok" and self.telemetry.gpu_count > 0

    @property
    def tokens_per_joule_all_in(self) -> float | None:
        """Completion tokens over all the energy measured, idle included (`tok/J all-in`)."""
        total = self.energy.get("total_j") or 0.0
        tokens = self.tokens.get("completion") or 0
        return tokens / total if total > 0 and tokens else None

    @property
    def tokens_per_joule_requests(self) -> float | None:
        """Completion tokens over the energy of the requests alone (`tok/J requests`)."""
        active = self.energy.get("active_j") or 0.0
        tokens = self.tokens.get("completion") or 0
        return tokens / active if active > 0 and tokens else None


def _progress(view: RequestView) -> tuple[bool, bool, bool]:
    return (view.finished, view.energy_final, view.t_first_token is not None)
