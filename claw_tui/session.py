"""The Session: one core that every face (TUI, `claw serve`) runs.

Start order: store → simulator (demo) → telemetry → ledger wiring → governor → gateway; stop runs in reverse on
every exit path. The core never imports Textual.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from claw_tui import __version__
from claw_tui.config import Config
from claw_tui.gateway.agents import Agent
from claw_tui.gateway.app import Gateway
from claw_tui.gateway.backends import Backend
from claw_tui.httpserver import AppServer
from claw_tui.ledger import Ledger
from claw_tui.store import SessionStore
from claw_tui.summary import build_summary
from claw_tui.telemetry.alerts import Alert, AlertMonitor, AlertThresholds
from claw_tui.telemetry.sampler import TelemetrySampler
from claw_tui.telemetry.types import TelemetryError, TelemetrySource

log = logging.getLogger(__name__)

DEMO_AGENTS = (
    Agent(name="support", model="qwen3:8b", system="You answer customer support tickets briefly and kindly.",
          max_tokens=400, description="demo agent"),
    Agent(name="coder", model="qwen3:32b", system="You are a careful senior engineer.", max_tokens=1200,
          options={"temperature": 0.2}, description="demo agent"),
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


class Session:
    def __init__(self, config: Config, options: SessionOptions | None = None) -> None:
        self.config = config
        self.options = options or SessionOptions()
        self.demo = self.options.demo
        self.clock = self.options.clock
        self.started_at = self.clock()
        self.ended_at: float | None = None
        self.ledger = Ledger(clock=self.clock)
        self.notices: list[str] = []
        self.store: SessionStore | None = None
        self.sim = None
        self.sampler: TelemetrySampler | None = None
        self.backends: list[Backend] = []
        self.agents: list[Agent] = [Agent.from_config(a) for a in config.agents]
        if self.demo and not self.agents:
            self.agents = list(DEMO_AGENTS)
        self.gateway: Gateway | None = None
        self.server: AppServer | None = None
        self.governor = None
        self.alerts = AlertMonitor(
            AlertThresholds(power_alert_w=config.telemetry.power_alert_w, temp_alert_c=config.telemetry.temp_alert_c),
            clock=self.clock, on_raise=self._alert_raised, on_clear=self._alert_cleared)
        self._stops: list[tuple[str, Callable[[], Awaitable[None] | None]]] = []

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.store.session_id if self.store else f"mem-{int(self.started_at)}"

    @property
    def gateway_url(self) -> str:
        return self.server.url if self.server else ""

    async def start(self) -> None:
        try:
            self._start_store()
            await self._start_simulator()
            await asyncio.to_thread(self._start_telemetry)
            await self._start_gateway()
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
        path = self.options.store_path or (Path(self.config.store.path).expanduser() if self.config.store.path
                                           else None)
        store = SessionStore(path)
        try:
            store.start(demo=self.demo, info={"version": __version__})
        except Exception as exc:  # a broken store must not stop the console; say so
            self.notices.append(f"session store unavailable ({store.path}): {exc}")
            return
        self.store = store
        self.ledger.add_finalized_listener(store.save_request)
        self._stops.append(("store", self._stop_store))

    def _stop_store(self) -> None:
        self.ledger.finalize_without_power()
        self.store.stop()

    async def _start_simulator(self) -> None:
        if not self.demo:
            return
        from claw_tui.sim.gpu import SimGPU
        from claw_tui.sim.server import SimServer

        self.sim = SimServer([SimGPU(seed=self.options.sim_seed, clock=self.clock)], seed=self.options.sim_seed,
                             speed=self.options.sim_speed)
        await self.sim.start()
        self._stops.append(("simulator", self.sim.stop))

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
        sampler = TelemetrySampler(source, poll_interval_s=cfg.poll_interval_s,
                                   energy_interval_s=cfg.energy_interval_s, history_minutes=cfg.history_minutes,
                                   clock=self.clock)
        sampler.add_power_listener(self.ledger.add_power)
        sampler.add_gpus_listener(self._telemetry_gpus_changed)
        sampler.add_poll_listener(self.alerts.observe)
        if self.store is not None:
            sampler.add_snapshot_listener(self.store.save_telemetry)
        sampler.start()
        if sampler.state == "error" and self.config.telemetry.source == "auto" and source is not None:
            # No GPU here: keep working without telemetry, and say so once.
            sampler.stop()
            sampler = TelemetrySampler(None)
            self.notices.append(
                "no NVIDIA GPU telemetry (NVML unavailable): energy is not measured; try 'claw --demo'")
        elif sampler.state == "error":
            self.notices.append(f"telemetry: {sampler.message}")
        elif source is None:
            self.notices.append("telemetry is off: energy is not measured")
        self.sampler = sampler
        self.ledger.set_gpus(range(sampler.gpu_count) if sampler.state == "ok" else [])
        self._stops.append(("telemetry", sampler.stop))

    def _telemetry_gpus_changed(self, statics) -> None:
        """The source opened (again) or failed: the ledger meters energy on the GPUs that can be read now."""
        self.ledger.set_gpus(range(len(statics)))
        if not statics:
            # Requests that finished while the samples stopped keep the energy they have: nothing more will come.
            self.ledger.finalize_without_power()

    def _alert_raised(self, alert: Alert) -> None:
        if self.store is not None:
            self.store.save_event("alert", alert.to_json())

    def _alert_cleared(self, alert: Alert) -> None:
        if self.store is not None:
            self.store.save_event("alert_cleared", alert.to_json())

    async def _start_gateway(self) -> None:
        cfg = self.config.gateway
        if self.sim is not None:
            self.backends = [Backend(name="sim", kind="ollama", url=self.sim.url, gpu=0)]
        else:
            self.backends = [
                Backend(name=b.name, kind=b.kind, url=b.url, weight=b.weight, gpu=b.gpu, api_key=b.api_key,
                        connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.idle_timeout_s)
                for b in self.config.backends
            ]
        for backend in self.backends:
            backend.read_timeout_s = cfg.idle_timeout_s
            backend.connect_timeout_s = cfg.connect_timeout_s
            backend.open()
        self._stops.append(("backends", self._close_backends))
        self.gateway = Gateway(backends=self.backends, ledger=self.ledger, agents=self.agents, session=self,
                               first_token_timeout_s=cfg.first_token_timeout_s)
        host, port = self.options.listen or cfg.host_port()
        self.server = AppServer(self.gateway.app, host, port)
        await self.server.start()
        self._stops.append(("gateway", self.server.stop))
        log.info("gateway listening on %s", self.server.url)

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

    def set_agents(self, agents: list[Agent]) -> None:
        self.agents = agents
        if self.gateway is not None:
            self.gateway.set_agents(agents)

    def telemetry_json(self) -> dict:
        sampler = self.sampler
        return {
            "source": sampler.kind if sampler else "none",
            "state": sampler.state if sampler else "none",
            "message": sampler.message if sampler else "",
            "trace": [sampler.trace_stats(i) for i in range(sampler.gpu_count)] if sampler else [],
            "energy_check": [sampler.energy_check(i) for i in range(sampler.gpu_count)] if sampler else [],
        }

    def governor_json(self) -> dict:
        if self.governor is None:
            return {"enabled": False, "state": "off"}
        return self.governor.status_json()

    def status_json(self) -> dict:
        sampler = self.sampler
        return {
            "version": __version__,
            "session": {"id": self.id, "started_at": self.started_at, "demo": self.demo},
            "gateway": {"url": self.gateway_url},
            "gpus": [s.to_json() for s in sampler.latest_all()] if sampler else [],
            "telemetry": self.telemetry_json(),
            "governor": self.governor_json(),
            "backends": [b.to_json() for b in self.backends],
            "in_flight": self.ledger.in_flight(),
            "alerts": [a.to_json() for a in self.alerts.active()],
            "notices": list(self.notices),
        }

    def session_json(self) -> dict:
        end = self.ended_at or self.clock()
        return {
            "id": self.id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(end - self.started_at, 3),
            "host": socket.gethostname(),
            "demo": self.demo,
        }

    def gpus_json(self) -> list[dict]:
        if self.sampler is None:
            return []
        return [
            {"index": s.index, "name": s.name, "driver": s.driver, "power_limit_w": s.power_limit_w}
            for s in self.sampler.statics()
        ]

    def counter_j(self) -> float | None:
        if self.sampler is None or not self.sampler.gpu_count:
            return None
        # The counter's measure of the very window the ledger integrated (see TelemetrySampler.counter_energy_j).
        deltas = [self.sampler.counter_energy_j(i) for i in range(self.sampler.gpu_count)]
        return None if any(d is None for d in deltas) else sum(deltas)

    def summary_json(self) -> dict:
        stddev = self.sampler.power_stddev_w(0) if self.sampler and self.sampler.gpu_count else None
        return build_summary(
            session=self.session_json(),
            gpus=self.gpus_json(),
            records=self.ledger.records(),
            energy=self.ledger.totals(),
            counter_j=self.counter_j(),
            power_stddev_w=stddev,
            governor=self.governor_json(),
            alerts=self.alerts.to_json(),
        )


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
        self.loop = asyncio.new_event_loop()
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

    def submit(self, coro) -> concurrent.futures.Future:
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
