"""Prometheus metrics of one Session, in a registry of its own (never the process-global one).

Request metrics are counted once per request, when its energy is final (the ledger's finalized listener), so the
request, its tokens and its joules land in the same scrape. Live values (in flight, backend state, GPU power) are
read at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from claw_tui.gateway.backends import STATES, Backend
from claw_tui.ledger import EnergyTotals, RequestRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The ledger's buckets: every joule in exactly one (pending: not yet attributed, requests still in flight).
ENERGY_USES: tuple[tuple[str, Literal["active_j", "load_j", "unmetered_j", "idle_j", "pending_j"]], ...] = (
    ("requests", "active_j"),
    ("load", "load_j"),
    ("unmetered", "unmetered_j"),
    ("idle", "idle_j"),
    ("pending", "pending_j"),
)


OTHER = "other"


class GatewayMetrics:
    """Label values come only from what the operator configured or what the backends really serve (`label_model`,
    `label_agent`): any other name a client sends is counted as `other`, so no client can blow up the number of
    series."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        label_model: Callable[[str], str] = lambda name: name,
        label_agent: Callable[[str], str] = lambda name: name,
    ) -> None:
        self.label_model = label_model
        self.label_agent = label_agent
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "claw_requests", "Requests by model, agent and outcome", ["model", "agent", "status"], registry=r
        )
        self.latency = Histogram(
            "claw_request_duration_seconds",
            "Request duration from arrival to last byte",
            ["model", "agent"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "claw_time_to_first_token_seconds",
            "Time from arrival to the first token",
            ["model", "agent"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "claw_tokens", "Tokens by model, agent and kind (prompt|completion)", ["model", "agent", "kind"], registry=r
        )
        self.energy = Counter(
            "claw_request_energy_joules", "GPU energy attributed to requests", ["model", "agent"], registry=r
        )
        self.retries = Counter(
            "claw_upstream_retries", "Upstream attempts retried before the first byte", ["backend"], registry=r
        )
        self.fallbacks = Counter(
            "claw_fallbacks", "Answers given by a fallback model", ["model", "fallback"], registry=r
        )
        self.degraded = Counter("claw_degraded_replies", "Replies from the degradation ladder", ["step"], registry=r)
        self.rejections = Counter("claw_rejections", "Requests refused by a policy", ["reason"], registry=r)
        self.model_events = Counter(
            "claw_model_events", "Model operations (load, unload, warmup) by model", ["model", "kind"], registry=r
        )
        self.load_energy = Counter(
            "claw_model_load_energy_joules", "GPU energy of model loads, by model", ["model"], registry=r
        )

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request or model operation (called once, when its energy is final)."""
        model = self.label_model(record.model) if record.model else ""
        if record.load_j > 0:
            self.load_energy.labels(model).inc(record.load_j)
        if not record.is_request:
            self.model_events.labels(model, record.kind).inc()
            return
        agent = self.label_agent(record.agent) if record.agent else ""
        self.requests.labels(model, agent, record.status).inc()
        if record.status == "rejected" and record.http_status in (401, 403, 413, 429, 503):
            self.rejections.labels(_REJECTION_REASONS[record.http_status]).inc()
        if record.duration_ms is not None and record.status == "ok":
            self.latency.labels(model, agent).observe(record.duration_ms / 1000)
        if record.ttft_ms is not None:
            self.ttft.labels(model, agent).observe(record.ttft_ms / 1000)
        if record.prompt_tokens:
            self.tokens.labels(model, agent, "prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens.labels(model, agent, "completion").inc(record.completion_tokens)
        if record.energy_j > 0:
            self.energy.labels(model, agent).inc(record.energy_j)

    def add_live(self, collector: LiveCollector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


_REJECTION_REASONS = {401: "auth", 403: "auth", 413: "body_too_large", 429: "rate_limit", 503: "busy"}


class LiveCollector:
    """Values read at scrape time: in flight and queued per backend, backend state, GPU power and energy."""

    def __init__(
        self,
        backends: Callable[[], Iterable[Backend]],
        gpus: Callable[[], list[dict[str, Any]]],
        ledger_totals: Callable[[], EnergyTotals],
        gateway_in_flight: Callable[[], int],
    ) -> None:
        self.backends = backends
        self.gpus = gpus
        self.ledger_totals = ledger_totals
        self.gateway_in_flight = gateway_in_flight

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "claw_backend_in_flight_requests", "Requests in flight to a backend", labels=["backend"]
        )
        queued = GaugeMetricFamily(
            "claw_backend_queued_requests", "Requests waiting for a backend slot", labels=["backend"]
        )
        state = GaugeMetricFamily(
            "claw_backend_state", "1 for the backend's current state (up, degraded, down)", labels=["backend", "state"]
        )
        for backend in self.backends():
            in_flight.add_metric([backend.name], backend.in_flight)
            queued.add_metric([backend.name], backend.admission.waiting)
            for name in STATES:
                state.add_metric([backend.name, name], 1.0 if backend.state == name else 0.0)
        yield in_flight
        yield queued
        yield state
        yield GaugeMetricFamily(
            "claw_in_flight_requests", "Requests being answered by the gateway", value=self.gateway_in_flight()
        )
        power = GaugeMetricFamily("claw_gpu_power_watts", "GPU power draw", labels=["gpu", "name"])
        vram = GaugeMetricFamily("claw_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu", "name"])
        util = GaugeMetricFamily("claw_gpu_utilization_ratio", "GPU utilisation (0..1)", labels=["gpu", "name"])
        for gpu in self.gpus():
            labels = [str(gpu["index"]), gpu.get("name") or ""]
            if gpu.get("power_w") is not None:
                power.add_metric(labels, gpu["power_w"])
            if gpu.get("vram_used_mib") is not None:
                vram.add_metric(labels, gpu["vram_used_mib"] * 1024 * 1024)
            if gpu.get("util_pct") is not None:
                util.add_metric(labels, gpu["util_pct"] / 100)
        yield power
        yield vram
        yield util
        totals = self.ledger_totals()
        energy = CounterMetricFamily(
            "claw_gpu_energy_joules", "GPU energy measured this session, by use", labels=["use"]
        )
        for use, key in ENERGY_USES:
            energy.add_metric([use], totals[key])
        yield energy
