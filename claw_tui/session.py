"""The Session: one core that every face (TUI, `claw serve`) runs.

Start order: store → simulator (demo) → telemetry → ledger wiring → governor → gateway; stop runs in reverse on
every exit path. The core never imports Textual.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from claw_tui import __version__
from claw_tui.config import Config, ConfigError, check_document, config_from_document, update_agents
from claw_tui.console.bus import EventBus
from claw_tui.console.feed import EventFeed
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.app import Gateway
from claw_tui.gateway.backends import Backend
from claw_tui.gateway.policies import check_listen_is_safe
from claw_tui.governor import (
    ClockControl,
    DryRunClockControl,
    Governor,
    StateFile,
    clock_control_for,
    default_state_file,
    unload_resident_models,
)
from claw_tui.httpserver import AppServer, ConnectionLimits
from claw_tui.ledger import Ledger
from claw_tui.records import RequestRecord
from claw_tui.request_pages import RequestQuery, page_bytes
from claw_tui.store import SessionStore, default_store_path, list_requests
from claw_tui.summary import AlertTracker, aligned_counter_j, summarize
from claw_tui.tally import SessionTally
from claw_tui.telemetry.alerts import Alert, AlertMonitor, AlertThresholds
from claw_tui.telemetry.sampler import TelemetrySampler
from claw_tui.telemetry.types import GpuStatic, TelemetryError, TelemetrySource

if TYPE_CHECKING:
    from claw_tui.batch.service import BatchService
    from claw_tui.sim.server import SimServer
    from claw_tui.summary_types import Summary

log = logging.getLogger(__name__)

T = TypeVar("T")

GIL_SWITCH_INTERVAL_S = 0.0005

DEMO_AGENTS = (
    Agent(
        name="support",
        model="qwen3:8b",
        system="You answer customer support tickets briefly and kindly.",
        max_tokens=400,
        description="demo agent",
    ),
    Agent(
        name="coder",
        model="qwen3:32b",
        system="You are a careful senior engineer.",
        max_tokens=1200,
        options={"temperature": 0.2},
        description="demo agent",
    ),
)


@dataclass
class SessionOptions:
    demo: bool = False
    replay_path: str | None = None
    listen: tuple[str, int] | None = None  # overrides config.gateway.listen
    store_path: Path | None = None  # overrides config.store.path
    use_store: bool = True
    sim_seed: int = 0
    sim_speed: float = 1.0
    telemetry_source: TelemetrySource | None = None  # an explicit source (tests)
    clock: Callable[[], float] = time.time  # wall clock for the ledger, sampler and simulated GPU
    demo_traffic: bool = False  # a few synthetic clients in demo mode (the interactive demo turns this on)
    clock_control: ClockControl | None = None  # an explicit governor clock control (tests)
    export_dir: Path | None = None  # where F7 writes summaries; default: "exports" beside the session store
    stats_interval_s: float = 1.0  # how often the session's running totals are saved to the store
    face: str = "serve"  # "serve" (the service) or "console" (a console running the core in-process)


class AgentError(ValueError):
    """An agent change that cannot be made; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Session:
    def __init__(self, config: Config, options: SessionOptions | None = None) -> None:
        self.config = config
        self.options = options or SessionOptions()
        self.demo = self.options.demo
        self.clock = self.options.clock
        self.started_at = self.clock()
        self.ended_at: float | None = None
        self.ledger = Ledger(clock=self.clock, max_records=config.store.memory_records)
        self.tally = SessionTally()  # every request of the session, counted as it finishes (the live summary)
        self.ledger.add_finalized_listener(self.tally.add)
        self.notices: list[str] = []
        self.store: SessionStore | None = None
        self.sim: SimServer | None = None
        self.sampler: TelemetrySampler | None = None
        self.backends: list[Backend] = []
        self.agents: list[Agent] = [Agent.from_config(a) for a in config.agents]
        if self.demo and not self.agents:
            self.agents = list(DEMO_AGENTS)
        self.gateway: Gateway | None = None
        self.server: AppServer | None = None
        self.governor: Governor | None = None
        self.batch: BatchService | None = None  # when batch jobs are served
        self.batch_off_reason = "batch jobs are starting: try again in a moment"
        # Live alerts with their hints (the console, /claw/v1/status), and time spent in each condition (export).
        self.alerts = AlertMonitor(
            AlertThresholds(power_alert_w=config.telemetry.power_alert_w, temp_alert_c=config.telemetry.temp_alert_c),
            clock=self.clock,
            on_raise=self._alert_raised,
            on_clear=self._alert_cleared,
        )
        self.alert_totals = AlertTracker(config.telemetry.power_alert_w, config.telemetry.temp_alert_c)
        self.loop: asyncio.AbstractEventLoop | None = None
        # Everything a console shows, as numbered events (/claw/v1/events and the in-process console).
        self.bus = EventBus()
        self.feed = EventFeed(self, self.bus)
        self.feed.attach_ledger()
        self._agents_lock = threading.Lock()
        self._monotonic_start = time.monotonic()
        self._counter_base: tuple[float, list[float]] | None = None
        self._counter_final: tuple[float, list[float]] | None = None
        self._stops: list[tuple[str, Callable[[], Awaitable[None] | None]]] = []

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.store.session_id if self.store else f"mem-{int(self.started_at)}"

    @property
    def gateway_url(self) -> str:
        return self.server.url if self.server else ""

    async def start(self) -> None:
        # The gateway's loop shares the interpreter lock with the sampler and store threads, and in the console
        # with the UI thread. With Python's default 5 ms switch interval, a thread busy in Python (a graph redraw
        # takes 15-35 ms) holds a waiting request back up to 5 ms at each hand-over; 0.5 ms keeps the gateway's
        # tail latency low (benchmarks/bench_gateway_tui.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        self.loop = asyncio.get_running_loop()
        try:
            self._start_store()
            await self._start_simulator()
            await asyncio.to_thread(self._start_telemetry)
            await self._start_governor()
            await self._start_gateway()
            await self._start_batch()
            self._start_feed()
            self._start_stats()
            self._start_demo_traffic()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything that started, newest first; one part failing never keeps the others running."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                result = stop()
                if asyncio.iscoroutine(result):
                    await asyncio.wait_for(result, timeout=10)
            except Exception:
                log.exception("stopping %s failed", name)
        self.ended_at = self.ended_at or self.clock()

    def _start_store(self) -> None:
        if not self.options.use_store:
            return
        path = self.options.store_path or (
            Path(self.config.store.path).expanduser() if self.config.store.path else None
        )
        store = SessionStore(path, clock=self.clock)
        try:
            store.start(
                demo=self.demo,
                info={"version": __version__},
                retention_days=self.config.store.retention_days,
                started_at=self.started_at,
            )
        except Exception as exc:  # a broken store must not stop the console; say so
            self.notices.append(f"session store unavailable ({store.path}): {exc}")
            return
        self.store = store
        self.ledger.add_finalized_listener(store.save_request)
        self._stops.append(("store", lambda: self._stop_store(store)))

    def _stop_store(self, store: SessionStore) -> None:
        self.ledger.finalize_without_power()
        self.ended_at = self.ended_at or self.clock()
        try:
            store.save_stats(self.stats_json(fresh=True))
        except Exception:  # the totals are a convenience; the rows are already saved
            log.exception("saving the final session stats failed")
        store.stop(self.ended_at)

    async def _start_simulator(self) -> None:
        if not self.demo:
            return
        from claw_tui.sim.gpu import SimGPU
        from claw_tui.sim.server import SimServer

        sim = SimServer(
            [SimGPU(seed=self.options.sim_seed, clock=self.clock)],
            seed=self.options.sim_seed,
            speed=self.options.sim_speed,
        )
        self.sim = sim
        await sim.start()
        self._stops.append(("simulator", sim.stop))

    def _make_source(self) -> TelemetrySource | None:
        if self.options.telemetry_source is not None:
            return self.options.telemetry_source
        choice = self.config.telemetry.source
        replay = self.options.replay_path or (self.config.telemetry.replay_file if choice == "replay" else "")
        if replay:
            from claw_tui.telemetry.replay import ReplaySource

            return ReplaySource(replay)
        if self.sim is not None and choice in ("auto", "sim"):
            from claw_tui.sim.gpu import SimTelemetrySource

            return SimTelemetrySource(self.sim.gpus)
        if choice == "none":
            return None
        from claw_tui.telemetry.nvml import NvmlSource

        return NvmlSource()

    def _start_telemetry(self) -> None:
        cfg = self.config.telemetry
        try:
            source = self._make_source()
        except TelemetryError as exc:
            self.notices.append(str(exc))
            source = None
        sampler = TelemetrySampler(
            source,
            poll_interval_s=cfg.poll_interval_s,
            energy_interval_s=cfg.energy_interval_s,
            history_minutes=cfg.history_minutes,
            clock=self.clock,
        )
        sampler.add_power_listener(self.ledger.add_power)
        sampler.add_reading_listener(lambda index, snapshot: self.ledger.add_utilization([snapshot]))
        self.feed.attach_sampler(sampler)
        sampler.add_gpus_listener(self._telemetry_gpus_changed)
        sampler.add_poll_listener(self.alerts.observe)
        sampler.add_snapshot_listener(self.alert_totals.add)
        if self.store is not None:
            sampler.add_snapshot_listener(self.store.save_telemetry)
        sampler.start()
        if sampler.state == "error" and self.config.telemetry.source == "auto" and source is not None:
            # No GPU here: keep working without telemetry, and say so once.
            sampler.stop()
            sampler = TelemetrySampler(None)
            self.notices.append("no NVIDIA GPU telemetry (NVML unavailable): energy is not measured; try 'claw --demo'")
        elif sampler.state == "error":
            self.notices.append(f"telemetry: {sampler.message}")
        elif source is None:
            self.notices.append("telemetry is off: energy is not measured")
        self.sampler = sampler
        self.ledger.set_gpus(range(sampler.gpu_count) if sampler.state == "ok" else [])
        self._counter_base = self._read_counters()
        self._stops.append(("telemetry", lambda: self._stop_telemetry(sampler)))

    def _stop_telemetry(self, sampler: TelemetrySampler) -> None:
        # The last samples and counter readings, so that the final totals cover the same window.
        self.refresh_telemetry()
        self._counter_final = self._read_counters()
        sampler.stop()

    async def _start_governor(self) -> None:
        cfg = self.config.governor
        control = self.options.clock_control or clock_control_for(cfg, sim_gpus=self.sim.gpus if self.sim else None)
        # The simulated GPU dies with the process: only real clocks need the crash note.
        state_file = None
        if self.sim is None or self.options.clock_control is not None:
            state_file = StateFile(Path(cfg.state_file).expanduser() if cfg.state_file else default_state_file())  # noqa: ASYNC240
        governor = Governor(
            cfg,
            control,
            in_flight=self._work_in_flight,
            last_activity=self._last_request_end,
            unload_models=lambda: unload_resident_models(self.backends, self._model_unloaded),
            gpu_busy=self._gpu_busy,
            on_event=self.store.save_event if self.store is not None else None,
            state_file=state_file,
            clock=self.clock,
        )
        try:
            await governor.start()
        except Exception as exc:  # the console and the gateway keep working without a governor; say why
            log.exception("the governor failed to start")
            self.notices.append(f"idle governor unavailable: {exc}")
            return
        if self.sampler is not None:
            self.sampler.add_power_listener(governor.power.add_power)
        self.governor = governor
        self.notices.extend(governor.notices)
        if isinstance(control, DryRunClockControl) and cfg.enabled:
            self.notices.append(f"governor runs as a dry run: {control.reason}")
        self._stops.append(("governor", governor.stop))

    def _work_in_flight(self) -> int:
        """Requests in flight, and batch work running or waiting to run (the governor keeps clocks up for it)."""
        batch = 1 if self.batch is not None and self.batch.drain.busy() else 0
        return self.ledger.in_flight() + batch

    def _model_unloaded(self, backend: Backend, model: str) -> None:
        """The governor's deep idle unloaded a model straight from its backend: a model event, like any unload."""
        self.ledger.record_model_event("unload", model, backend=backend.name, client="governor")
        if self.gateway is not None:
            self.gateway.residency.unloaded(backend, model)

    def _last_request_end(self) -> float | None:
        ends = [r.t_end for r in self.ledger.records(64) if r.t_end is not None]
        return max(ends) if ends else None

    def _gpu_busy(self, index: int) -> bool:
        """Work on the GPU that did not come through the gateway (another process): never downclock under it."""
        snapshot = self.sampler.latest(index) if self.sampler is not None else None
        return snapshot is not None and (snapshot.util_pct or 0) > 5 and self.ledger.in_flight() == 0

    def _read_counters(self) -> tuple[float, list[float]] | None:
        """(when, every GPU's energy counter in joules), or None when one cannot be read."""
        sampler = self.sampler
        if sampler is None or sampler.state != "ok" or not sampler.gpu_count or sampler.source is None:
            return None
        try:
            read = [sampler.source.energy_counter_j(i) for i in range(sampler.gpu_count)]
        except Exception:  # a driver error here only costs the cross-check
            return None
        values = [v for v in read if v is not None]
        return (self.clock(), values) if len(values) == len(read) else None

    def _aligned_counter_j(
        self, base_reading: tuple[float, list[float]], now: tuple[float, list[float]]
    ) -> float | None:
        """The counters' delta over the window the power samples cover (see `aligned_counter_j`)."""
        sampler = self.sampler
        (base_ts, base), (now_ts, values) = base_reading, now
        if sampler is None or len(values) != len(base):
            return None
        energies = self.ledger.energy_by_gpu()
        total = 0.0
        for index, (start_j, end_j) in enumerate(zip(base, values)):
            gpu = energies.get(index)
            window = gpu.sampled_window() if gpu is not None else None
            if window is None:
                total += end_j - start_j
                continue
            total += aligned_counter_j(start_j, base_ts, end_j, now_ts, *window)
        return total

    def _start_stats(self) -> None:
        if self.store is None:
            return
        task = asyncio.create_task(self._save_stats_forever(), name="claw-stats")

        async def stop() -> None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

        self._stops.append(("stats", stop))

    async def _save_stats_forever(self) -> None:
        while (store := self.store) is not None:
            await asyncio.sleep(self.options.stats_interval_s)
            try:
                stats = await asyncio.to_thread(self.stats_json)
                store.save_stats(stats)
            except Exception:
                log.exception("saving session stats failed")

    def _telemetry_gpus_changed(self, statics: list[GpuStatic]) -> None:
        """The source opened (again) or failed: the ledger meters energy on the GPUs that can be read now."""
        self.ledger.set_gpus(range(len(statics)))
        if not statics:
            # Requests that finished while the samples stopped keep the energy they have: nothing more will come.
            self.ledger.finalize_without_power(in_flight_too=False)

    def _alert_raised(self, alert: Alert) -> None:
        if self.store is not None:
            self.store.save_event("alert", alert.to_json())
        self._alerts_changed()

    def _alert_cleared(self, alert: Alert) -> None:
        if self.store is not None:
            self.store.save_event("alert_cleared", alert.to_json())
        self._alerts_changed()

    def _alerts_changed(self) -> None:
        self.feed.publish_if_changed("alerts", lambda: {"alerts": [a.to_json() for a in self.alerts.active()]})

    async def _start_gateway(self) -> None:
        cfg = self.config.gateway
        host, port = self.options.listen or cfg.host_port()
        check_listen_is_safe(host, port, [*cfg.tokens, *cfg.admin_tokens])
        if self.sim is not None:
            self.backends = [Backend(name="sim", kind="ollama", url=self.sim.url, gpu=0)]
        else:
            self.backends = [
                Backend(
                    name=b.name,
                    kind=b.kind,
                    url=b.url,
                    weight=b.weight,
                    gpu=b.gpu,
                    api_key=b.api_key,
                    health_interval_s=b.health_interval_s,
                )
                for b in self.config.backends
            ]
        for backend in self.backends:
            backend.read_timeout_s = cfg.idle_timeout_s
            backend.connect_timeout_s = cfg.connect_timeout_s
            backend.open()
        self._stops.append(("backends", self._close_backends))
        self.gateway = Gateway(backends=self.backends, ledger=self.ledger, agents=self.agents, session=self, config=cfg)
        if self.governor is not None:
            self.gateway.before_forward.append(self.governor.wake)
        self.server = AppServer(self.gateway.app, host, port, ConnectionLimits.from_config(cfg))
        await self.server.start()
        self._stops.append(("gateway", self.server.stop))
        await self.gateway.start(self.server.url)
        self._stops.append(("gateway policies", self.gateway.stop))
        log.info("gateway listening on %s", self.server.url)

    async def _start_batch(self) -> None:
        if not self.config.batch.enabled:
            self.batch_off_reason = "batch jobs are off here ([batch] enabled = false in the config)"
            return
        if self.store is None:
            self.batch_off_reason = "batch jobs need the session store, which is off or unavailable here"
            return
        from claw_tui.batch.service import BatchService
        from claw_tui.batch.store import BatchStore

        gateway = self.gateway
        assert gateway is not None  # the gateway starts before batch jobs
        service = BatchService(
            self.config.batch,
            BatchStore(self.store.path),
            interactive=lambda: gateway.active,
            resident=lambda model: any(gateway.residency.is_resident(b, model) for b in self.backends),
            publish=self.bus.publish,
            clock=self.clock,
            retention_days=self.config.store.retention_days,
        )
        try:
            await service.start(self.gateway_url, self.gateway_headers())
        except Exception as exc:  # the gateway serves on without batch jobs; say why
            log.exception("batch jobs could not start")
            self.batch_off_reason = f"batch jobs unavailable: {exc}"
            self.notices.append(self.batch_off_reason)
            return
        self.ledger.add_event_listener(service.record_opened)
        gateway.before_forward.append(service.drain.before_forward)  # interactive work preempts batch lines
        self.ledger.add_finalized_listener(service.record_final)
        self.batch = service
        self._stops.append(("batch jobs", self._stop_batch))

    async def _stop_batch(self) -> None:
        self.batch_off_reason = "the claw service is stopping"
        service, self.batch = self.batch, None
        if service is not None:
            if self.gateway is not None:
                self.gateway.before_forward.remove(service.drain.before_forward)
            await service.stop()

    def batch_jobs_json(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest batch jobs as /v1/batches shows them (blocking: reads the store; call it off the loop)."""
        return self.batch.jobs_now(limit) if self.batch is not None else []

    def _start_feed(self) -> None:
        self.feed.start()
        self._stops.append(("events", self.feed.stop))

    def _start_demo_traffic(self) -> None:
        if not (self.demo and self.options.demo_traffic):
            return
        from claw_tui.sim.traffic import DemoTraffic

        traffic = DemoTraffic(self.gateway_url, ["qwen3:8b", "llama3.2:3b", "support"], seed=self.options.sim_seed)
        traffic.start()
        self._stops.append(("demo traffic", traffic.stop))

    async def _close_backends(self) -> None:
        for backend in self.backends:
            await backend.close()

    # ---- state for the faces ------------------------------------------------------------------------------------
    def refresh_telemetry(self) -> None:
        """Read the newest power samples now, so energy shown right after a request is up to date."""
        if self.sampler is not None:
            self.sampler.poll_now()

    def gateway_headers(self) -> dict[str, str]:
        """Headers for the faces' own requests to the gateway (a session token when clients need one)."""
        return self.gateway.client_headers() if self.gateway is not None else {}

    def set_agents(self, agents: list[Agent]) -> None:
        self.agents = agents
        if self.gateway is not None:
            self.gateway.set_agents(agents)
        self.bus.publish("agents", {"agents": self.agents_json()})

    def agents_json(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(agent) for agent in self.agents]

    def save_agents(self, agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Check the agents, write them to the config file (its [[agents]] only; comments stay), then serve them.
        Blocking (file I/O): call it off the gateway's loop. Nothing changes when a check or the write fails."""
        try:
            check_document({"agents": agents}, self.config.path)
        except ConfigError as exc:
            raise AgentError(400, str(exc)) from None
        configs = config_from_document({"agents": agents}).agents
        # The demo's sample agents are served, never written into a config file.
        to_save = [a for a in configs if not (self.demo and Agent.from_config(a) in DEMO_AGENTS)]
        if self.config.path is not None:
            try:
                update_agents(self.config.path, to_save)
            except (ConfigError, OSError) as exc:
                raise AgentError(500, f"agents not saved: {exc}") from None
        self.config.agents = configs
        self.set_agents([Agent.from_config(a) for a in configs])
        return self.agents_json()

    def put_agent(self, agent: dict[str, Any], replacing: str | None = None) -> list[dict[str, Any]]:
        """Create an agent (`replacing` None) or replace the one named `replacing`; returns every agent."""
        if not isinstance(agent, dict):
            raise AgentError(400, "an agent is a JSON object with at least a name and a model")
        name = agent.get("name")
        with self._agents_lock:
            agents = self.agents_json()
            names = [a["name"] for a in agents]
            if replacing is not None and replacing not in names:
                raise AgentError(404, f"no agent named '{replacing}'")
            if name in names and name != replacing:
                raise AgentError(409, f"an agent named '{name}' already exists")
            if replacing is None:
                agents.append(agent)
            else:
                agents = [agent if a["name"] == replacing else a for a in agents]
            return self.save_agents(agents)

    def delete_agent(self, name: str) -> list[dict[str, Any]]:
        with self._agents_lock:
            agents = self.agents_json()
            if name not in [a["name"] for a in agents]:
                raise AgentError(404, f"no agent named '{name}'")
            return self.save_agents([a for a in agents if a["name"] != name])

    def telemetry_json(self) -> dict[str, Any]:
        sampler = self.sampler
        return {
            "source": sampler.kind if sampler else "none",
            "state": sampler.state if sampler else "none",
            "message": sampler.message if sampler else "",
            "trace": [sampler.trace_stats(i) for i in range(sampler.gpu_count)] if sampler else [],
            "energy_check": [sampler.energy_check(i) for i in range(sampler.gpu_count)] if sampler else [],
        }

    def governor_json(self) -> dict[str, Any]:
        if self.governor is None:
            return {"enabled": False, "state": "off"}
        return self.governor.status_json()

    def status_json(self) -> dict[str, Any]:
        sampler = self.sampler
        return {
            "service": "claw",
            "face": self.options.face,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self._monotonic_start, 3),
            "session": {"id": self.id, "started_at": self.started_at, "demo": self.demo},
            "last_event_id": self.bus.last_id,
            "stats": self.feed.stats_json(),
            "gateway": {"url": self.gateway_url},
            "gpus": [s.to_json() for s in sampler.latest_all()] if sampler else [],
            "telemetry": self.telemetry_json(),
            "governor": self.governor_json(),
            "backends": [b.to_json() for b in self.backends],
            "in_flight": self.ledger.in_flight(),
            "alerts": [a.to_json() for a in self.alerts.active()],
            "alert_thresholds": {
                "power_alert_w": self.alerts.thresholds.power_alert_w,
                "temp_alert_c": self.alerts.thresholds.temp_alert_c,
            },
            "notices": list(self.notices),
        }

    def session_json(self) -> dict[str, Any]:
        end = self.ended_at or self.clock()
        return {
            "id": self.id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(end - self.started_at, 3),
            "host": socket.gethostname(),
            "demo": self.demo,
        }

    def gpus_json(self) -> list[dict[str, Any]]:
        if self.sampler is None:
            return []
        return [
            {"index": s.index, "name": s.name, "driver": s.driver, "power_limit_w": s.power_limit_w}
            for s in self.sampler.statics()
        ]

    def counter_j(self, fresh: bool = False) -> float | None:
        """Energy counter joules since telemetry started; `fresh` reads the counters now (~3 ms per GPU on NVML)
        so that the window matches the integral of the samples polled just before."""
        if self.sampler is None or not self.sampler.gpu_count:
            return None
        if fresh and self._counter_base is not None:
            now = self._counter_final or self._read_counters()
            if now is not None:
                return self._aligned_counter_j(self._counter_base, now)
        # The counter's measure of the very window the ledger integrated (see TelemetrySampler.counter_energy_j).
        deltas = [self.sampler.counter_energy_j(i) for i in range(self.sampler.gpu_count)]
        known = [d for d in deltas if d is not None]
        return sum(known) if len(known) == len(deltas) else None

    def stats_json(self, fresh: bool = False, with_tally: bool = True) -> dict[str, Any]:
        """The running totals the store saves every second: enough to rebuild the summary after a crash."""
        stddev = self.sampler.power_stddev_w(0) if self.sampler and self.sampler.gpu_count else None
        stats = {
            "energy": self.ledger.totals(),
            "counter_j": self.counter_j(fresh=fresh),
            "power_stddev_w": stddev,
            "gpus": self.gpus_json(),
            "governor": self.governor.summary_json() if self.governor is not None else None,
            "alerts": {**self.alert_totals.to_json(), **self.alerts.to_json()},
            "models": self.ledger.models_json(),
            "idle_baseline_w": self.idle_baseline_w(),
        }
        if with_tally:  # the live summary reads the tally itself
            stats["tally"] = self.tally.to_json()
        return stats

    def idle_baseline_w(self) -> float | None:
        """The GPUs' idle power with no model resident, summed over GPUs (None until measured on every GPU)."""
        baselines = self.ledger.idle_baselines()
        gpus = self.sampler.gpu_count if self.sampler is not None else 0
        return sum(baselines.values()) if gpus and len(baselines) == gpus else None

    def requests_page(self, query: RequestQuery) -> bytes:
        """A page of `/claw/v1/requests` as JSON bytes (called on a thread: it may read the store)."""
        memory = self.ledger.records()
        store = self.store

        full = len(memory) >= self.ledger.max_records
        if store is None:
            return page_bytes(memory, query, None, ring_full=full)

        def read_store(q: RequestQuery, older_than: RequestRecord | None) -> list[RequestRecord]:
            return list_requests(store.path, store.session_id, q, older_than)

        return page_bytes(memory, query, read_store, ring_full=full)

    def summary(self) -> Summary:
        self.refresh_telemetry()
        stats = self.stats_json(fresh=True, with_tally=False)
        return summarize(
            session=self.session_json(),
            gpus=stats["gpus"],
            tally=self.tally,
            energy=stats["energy"],
            counter_j=stats["counter_j"],
            power_stddev_w=stats["power_stddev_w"],
            governor=stats["governor"],
            alerts=stats["alerts"],
            models=stats["models"],
            idle_baseline_w=stats["idle_baseline_w"],
        )

    def summary_json(self) -> dict[str, Any]:
        return self.summary().to_json()

    # ---- commands from other threads (the TUI) --------------------------------------------------------------------
    def run_on_loop(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the session's loop from another thread and wait for its result."""
        if self.loop is None or self.loop.is_closed():
            coro.close()
            raise RuntimeError("the session is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def set_governor_enabled(self, enabled: bool) -> dict[str, Any]:
        if self.governor is None:
            raise RuntimeError("the governor is not running")
        status = self.run_on_loop(self.governor.set_enabled(enabled))
        self.governor_changed()
        return status

    def governor_changed(self) -> None:
        """Consoles see a governor change at once, not at the next once-a-second look."""
        self.feed.publish_if_changed("governor", self.governor_json, force=True)

    def toggle_governor(self) -> dict[str, Any]:
        return self.set_governor_enabled(not self.governor_json().get("enabled", False))

    def export_dir(self) -> Path:
        if self.options.export_dir is not None:
            return self.options.export_dir
        store_path = self.store.path if self.store is not None else default_store_path()
        return store_path.parent / "exports"

    def export_summary(self, directory: Path | None = None) -> Path:
        """Write the summary now (JSON, with Markdown and per-request CSV beside it); returns the JSON's path."""
        from claw_tui.export import write_summary_files

        return write_summary_files(self.summary(), self.ledger.records(), directory or self.export_dir())


class SessionThread:
    """Runs a Session on its own event loop in a background thread, so the gateway never waits on the UI."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    def start(self, timeout: float = 60.0) -> None:
        self._thread = threading.Thread(target=self._run, name="claw-session", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the session did not start in time")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        from claw_tui.runtime import new_event_loop

        self.loop = new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.session.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self.session.stop()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the session's loop from another thread."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 20.0) -> None:
        if self.loop is None or self._thread is None:
            return
        if self._stopped is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None
